"""``CorrelationIdMiddleware``: a request id for stacks without `ObservabilityMiddleware`.

The same id, rules and places as the observability layer (it reuses
`sysdesign_kit.observability.request_id`): a caller's ``X-Request-ID`` is kept when it is
1 to 128 bytes of letters, digits and ``. _ : -``, anything else is replaced by a fresh id;
the id goes in ``scope["sysdesign_kit.request_id"]``, in the context variable log filters
read (`get_request_id`), and on the response. Stacked under `ObservabilityMiddleware`, it
takes the id already chosen instead of minting a second one (and leaves the echo to it).

For forwarding, the request's own headers are made to carry the chosen id exactly once, so
a reverse proxy that copies the request headers upstream forwards the id the logs show,
not the malformed one (or several) the client sent.
"""

from __future__ import annotations

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import ASGIApp, Message, Receive, Scope, Send
from sysdesign_kit.observability.request_id import (
    MAX_REQUEST_ID_LENGTH,
    REQUEST_ID_SCOPE_KEY,
    current_request_id,
    new_request_id,
    parse_request_id,
)

__all__ = ["CorrelationIdMiddleware"]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


class CorrelationIdMiddleware:
    """Give every HTTP and websocket request an id, echo it, and forward it.

    Args:
        app: the ASGI app.
        header: the request and response header carrying the id.
        trust_incoming: keep a well-formed id sent by the caller (behind a proxy that sets
            it); with ``False`` every request gets a fresh one.
        max_length: the longest incoming id kept (at most 128).
        echo: add the id to the response (unless the app set that header itself).
        forward: rewrite the request's headers to carry the chosen id exactly once.

    Raises:
        ConfigurationError: a header that is not an HTTP header name, or a max_length
            outside 1..128.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "x-request-id",
        trust_incoming: bool = True,
        max_length: int = MAX_REQUEST_ID_LENGTH,
        echo: bool = True,
        forward: bool = True,
    ) -> None:
        name = header.strip().lower()
        if not name or not set(name) <= _TCHAR:
            raise ConfigurationError(f"header {header!r} is not a valid HTTP header name")
        if not 1 <= max_length <= MAX_REQUEST_ID_LENGTH:
            raise ConfigurationError(
                f"max_length must be between 1 and {MAX_REQUEST_ID_LENGTH}, not {max_length}"
            )
        self.app = app
        self.header = name.encode("ascii")
        self.trust_incoming = trust_incoming
        self.max_length = max_length
        self.echo = echo
        self.forward = forward

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        name = self.header
        headers = scope.get("headers") or []
        request_id = scope.get(REQUEST_ID_SCOPE_KEY)
        seen = 0
        incoming: str | None = None
        for key, value in headers:
            if key == name:
                seen += 1
                if seen == 1 and self.trust_incoming:
                    incoming = parse_request_id(value, self.max_length)
        echo = self.echo and kind == "http"
        if isinstance(request_id, str):
            echo = False  # the layer that chose it echoes it
        else:
            request_id = incoming if incoming is not None else new_request_id()
            scope[REQUEST_ID_SCOPE_KEY] = request_id
        encoded = request_id.encode("ascii")
        if self.forward and (seen != 1 or incoming != request_id):
            scope["headers"] = [(k, v) for k, v in headers if k != name]
            scope["headers"].append((name, encoded))
        token = current_request_id.set(request_id)
        try:
            if echo:
                await self.app(scope, receive, _Echo(send, name, encoded))
            else:
                await self.app(scope, receive, send)
        finally:
            current_request_id.reset(token)


class _Echo:
    """Adds the id to the response's headers unless the app already set that header."""

    __slots__ = ("header", "send", "value")

    def __init__(self, send: Send, header: bytes, value: bytes) -> None:
        self.send = send
        self.header = header
        self.value = value

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers") or ()
            name = self.header
            for key, _ in headers:
                if key.lower() == name:
                    break
            else:
                message["headers"] = [*headers, (name, self.value)]
        await self.send(message)
