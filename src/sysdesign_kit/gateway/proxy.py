"""`ReverseProxy`: a pure-ASGI reverse proxy to one upstream service, over httpx.

::

    app = ReverseProxy(["http://10.0.0.5:8000", "http://10.0.0.6:8000"])

Per HTTP request it picks an instance of the service (`RoundRobin` over static base URLs
by default; anything with `UpstreamPicker`'s shape plugs in, such as a discovery client),
and sends the request through the service's `AsyncResilientTransport` (a breaker per
instance, retries only where repeating is safe, the seed's timeouts) over one pooled
``httpx.AsyncHTTPTransport`` kept across requests. It talks to the transport, not through
an ``httpx.AsyncClient``: a client's cookie jar (shared by every caller), auth, redirects
and hooks are what a proxy must not apply, and skipping them saves ~27 us per request
(``client=`` still sends through a client of one's own).

- **Streaming both ways.** The request body goes from ASGI ``receive`` to the upstream as it
  arrives (a body that came in one message is sent as bytes, so an idempotent request stays
  retryable); the response goes back chunk by chunk as the upstream sends it, raw (a
  compressed body stays compressed). Nothing is buffered whole.
- **Path and query as sent.** The upstream gets the raw, still percent-encoded path
  (``scope["raw_path"]``; a `ServiceRouter <sysdesign_kit.gateway.routing.ServiceRouter>`
  may rewrite it first) and the query string byte for byte: ``%2F`` stays ``%2F``.
- **Headers.** Hop-by-hop headers (``Connection`` and every header it names, ``Keep-Alive``,
  ``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are removed both
  ways, and so are ``Expect`` (the ASGI server has answered it) and the upstream's ``Date``
  and ``Server`` (the server in front sends its own). ``Host`` becomes the upstream's
  unless ``preserve_host``. The request id (``scope["sysdesign_kit.request_id"]``, else a
  well-formed incoming ``X-Request-ID``) is forwarded as ``X-Request-ID``.
- **Forwarding headers.** ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``
  and RFC 7239 ``Forwarded`` describe what this gateway saw: the peer address
  (``scope["client"]``), the scheme and the ``Host``. Whatever a client sent in them is
  dropped, since any client can write them; only when the peer is in ``trusted_proxies``
  (a load balancer in front) is the incoming chain kept and this hop appended to it, and
  its ``X-Forwarded-Proto`` / ``-Host`` kept as the original request's.
- **Failures are answers.** Before the response has started, every failure becomes an RFC
  9457 problem: an instance refusing or resetting connections -> 502, a timeout -> 504,
  every instance's breaker open -> 503 with ``Retry-After``, the connection pool exhausted
  -> 503; never a 500. When one instance's breaker is open another instance is tried. A
  failure after the response started cannot change its status: the exception is re-raised
  so that the server drops the connection and the client sees a truncated answer rather
  than a complete-looking one.
- **A client that leaves stops the work.** When the client disconnects while the upstream
  is still thinking or streaming, the upstream request is cancelled and its connection
  closed.

Websocket requests are refused (closed before the handshake). A ``lifespan`` scope is
answered, closing the client at shutdown; when the proxy is mounted inside another app,
call `ReverseProxy.aclose` from that app's lifespan.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx

from sysdesign_kit.breaker import BreakerRegistry
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError
from sysdesign_kit.events import Listener
from sysdesign_kit.gateway._respond import Receive, Scope, Send, run_lifespan, send_problem
from sysdesign_kit.http import (
    SEED_TIMEOUT,
    SEED_TOTAL_TIMEOUT,
    AsyncResilientTransport,
    default_retry,
)
from sysdesign_kit.observability.request_id import REQUEST_ID_SCOPE_KEY, parse_request_id
from sysdesign_kit.retry import Retry
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "UPSTREAM_PATH_SCOPE_KEY",
    "ReverseProxy",
    "RoundRobin",
    "Upstream",
    "UpstreamPicker",
]

#: Where a router leaves the raw path the upstream should get (bytes, percent-encoded).
UPSTREAM_PATH_SCOPE_KEY = "sysdesign_kit.upstream_path"
#: Headers that describe one connection, never forwarded (RFC 9110 7.6.1), besides
#: every ``Proxy-*`` header and every header a ``Connection`` header names.
HOP_BY_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_FORWARDING = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
# Request headers not passed on as they are: hop-by-hop ones, those this proxy rewrites,
# and Expect (the ASGI server already answered any 100-continue).
_REQUEST_SKIP = HOP_BY_HOP_HEADERS | _FORWARDING | {b"host", b"x-request-id", b"expect"}
_RESPONSE_SKIP = HOP_BY_HOP_HEADERS | {b"date", b"server"}
_HOST_VALUE = re.compile(rb"[A-Za-z0-9._~\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_WS_INTERNAL_ERROR = 1011
_MAX_PEERS = 4096  # peer addresses whose forwarding values are kept

_log = logging.getLogger("sysdesign_kit.gateway.proxy")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One instance of a service: where to send requests, parsed once.

    Attributes:
        url: the base URL as given (``http://10.0.0.5:8000`` or with a path prefix,
            ``http://10.0.0.5:8000/base``).
        scheme: ``http`` or ``https``.
        host: the host name or address (IPv6 without brackets).
        port: the port (the scheme's default when the URL has none).
        base_path: the URL's path without its trailing slash, prepended to every path sent.
        host_header: the ``Host`` value the upstream expects.
    """

    url: str
    scheme: str
    host: str
    port: int
    base_path: bytes
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """An `Upstream` from a base URL.

        Raises:
            ConfigurationError: not an absolute http(s) URL, or it carries a query,
                fragment or credentials.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigurationError(f"upstream {url!r} is not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(f"upstream {url!r} must be an absolute http(s) URL")
        if parsed.query or parsed.fragment or parsed.userinfo:
            raise ConfigurationError(
                f"upstream {url!r} must not carry a query, a fragment or credentials"
            )
        default_port = 443 if parsed.scheme == "https" else 80
        port = parsed.port or default_port
        host_header = parsed.netloc  # bytes, IPv6 bracketed, port only when explicit
        return cls(
            url=url,
            scheme=parsed.scheme,
            host=parsed.host,
            port=port,
            base_path=parsed.raw_path.rstrip(b"/"),
            host_header=host_header,
        )


@runtime_checkable
class UpstreamPicker(Protocol):
    """Chooses the instance of a service that gets the next request.

    `RoundRobin` over a static list is the default; a discovery-backed balancer plugs in
    here. ``__len__`` tells how many instances may be offered, so that the proxy can try
    another when one's breaker is open.
    """

    def pick(self) -> Upstream:
        """The instance for the next request."""
        ...

    def __len__(self) -> int:
        """How many instances `pick` chooses among (at least 1)."""
        ...


class RoundRobin:
    """Static instances taken in turn.

    Args:
        upstreams: base URLs (or parsed `Upstream`) of the service's instances.

    Raises:
        ConfigurationError: no instance, or a URL that `Upstream.parse` refuses.
    """

    __slots__ = ("_i", "_n", "upstreams")

    def __init__(self, upstreams: Iterable[str | Upstream]) -> None:
        if isinstance(upstreams, str):
            upstreams = (upstreams,)
        parsed = tuple(u if isinstance(u, Upstream) else Upstream.parse(u) for u in upstreams)
        if not parsed:
            raise ConfigurationError("a service needs at least one upstream URL")
        self.upstreams = parsed
        self._n = len(parsed)
        self._i = -1

    def pick(self) -> Upstream:
        """The next instance in turn."""
        self._i = i = (self._i + 1) % self._n
        return self.upstreams[i]

    def __len__(self) -> int:
        return self._n


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class _Watch:
    """Cancels the task serving a request when its client disconnects.

    Started once the request body has been read in full: from then on, the only message
    ``receive`` can still bring is ``http.disconnect``.
    """

    __slots__ = ("finished", "gone", "task", "watcher")

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.finished = False
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    def start(self, receive: Receive) -> None:
        if self.watcher is None and self.task is not None:
            self.watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            message = await receive()
        except Exception:  # a server whose receive fails once the exchange ended
            return
        # Anything but a disconnect breaks the protocol (the body is over); stop watching
        # rather than spin on a server that keeps answering at once.
        if message["type"] == "http.disconnect" and not self.finished and self.task is not None:
            self.gone = True
            self.task.cancel()

    def stop(self) -> None:
        self.finished = True
        if self.watcher is not None:
            self.watcher.cancel()


class _RequestBody(httpx.AsyncByteStream):
    """The rest of an ASGI request body, streamed to httpx as it arrives."""

    def __init__(self, first: bytes, receive: Receive, watch: _Watch) -> None:
        self._first = first
        self._receive = receive
        self._watch = watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._first:
            yield self._first
        receive = self._receive
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    self._watch.start(receive)
                    return
            elif kind == "http.disconnect":
                raise _ClientGone


class ReverseProxy:
    """An ASGI app that forwards every HTTP request to one upstream service.

    Args:
        upstreams: the service's instances: one base URL, several (taken in turn), or an
            `UpstreamPicker`.
        preserve_host: send the client's ``Host`` instead of the upstream's.
        trusted_proxies: addresses or networks (``"10.0.0.0/8"``) of proxies in front of
            this one whose forwarding headers are kept and appended to; from any other
            peer they are replaced by what this proxy saw.
        timeout: httpx timeouts (connect, read, write, pool) for each upstream attempt.
        total_timeout: seconds until the upstream's response headers must be in, retries
            included (None: unbounded); the body may stream for longer. A ``retry`` of
            one's own bounds the requests it may retry by its own ``deadline``.
        retry: the retry policy of the resilient transport (default: one retry after at
            most 0.1 s, for idempotent requests with a body sent whole).
        breaker_settings: `CircuitBreaker` settings for the per-instance breakers.
        breakers: a shared `BreakerRegistry` (default: one of this proxy's own).
        limits: the connection pool's limits.
        transport: the transport doing the I/O under the resilient one (default:
            ``httpx.AsyncHTTPTransport(limits=limits)``).
        client: a ready client to send with instead (its transport and timeouts are used
            as they are: no breaker or retries are added).
        clock: time source of the breakers and retries.
        listeners: receive the breakers' and retries' events.

    Raises:
        ConfigurationError: a bad URL, network or setting.
    """

    def __init__(
        self,
        upstreams: str | Iterable[str | Upstream] | UpstreamPicker,
        *,
        preserve_host: bool = False,
        trusted_proxies: Iterable[str] = (),
        timeout: httpx.Timeout = SEED_TIMEOUT,
        total_timeout: float | None = SEED_TOTAL_TIMEOUT,
        retry: Retry | None = None,
        breaker_settings: Mapping[str, Any] | None = None,
        breakers: BreakerRegistry | None = None,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008 - immutable
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if isinstance(upstreams, UpstreamPicker):
            self.picker: UpstreamPicker = upstreams
        else:
            self.picker = RoundRobin(upstreams)
        if isinstance(trusted_proxies, str):
            raise ConfigurationError("trusted_proxies must be a list of networks, not one string")
        try:
            self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(f"trusted_proxies: {exc}") from exc
        if not isinstance(timeout, httpx.Timeout):
            raise ConfigurationError(f"timeout must be an httpx.Timeout, got {timeout!r}")
        self.preserve_host = bool(preserve_host)
        if client is None:
            listeners = tuple(listeners)
            if retry is None:
                retry = default_retry(
                    attempts=2, wait_initial=0.1, wait_max=1.0, deadline=total_timeout,
                    clock=clock, listeners=listeners,
                )  # fmt: skip
            resilient = AsyncResilientTransport(
                transport if transport is not None else httpx.AsyncHTTPTransport(limits=limits),
                retry=retry, breakers=breakers, breaker_settings=breaker_settings,
                timeout=timeout, total_timeout=total_timeout, clock=clock, listeners=listeners,
            )  # fmt: skip
            self.transport: AsyncResilientTransport | None = resilient
            self.client: httpx.AsyncClient | None = None
            # The transport, not a client: the pool lives there, and a client's cookie
            # jar, auth, redirects and hooks are what a proxy must not apply (and cost
            # ~27 us per request). The transport sets its own timeouts on each request.
            self._send: Callable[[httpx.Request], Awaitable[httpx.Response]] = (
                resilient.handle_async_request
            )
            self._extensions: dict[str, Any] = {}
        else:
            if not isinstance(client, httpx.AsyncClient):
                raise ConfigurationError(f"client must be an httpx.AsyncClient, got {client!r}")
            self.transport = None
            self.client = own = client

            async def send_with_client(request: httpx.Request) -> httpx.Response:
                return await own.send(request, stream=True)

            self._send = send_with_client
            # httpx puts a client's timeout on a request in build_request only.
            self._extensions = {"timeout": client.timeout.as_dict()}
        self._peers: dict[str, tuple[bytes, bytes, bool]] = {}
        self._closed = False

    @property
    def is_closed(self) -> bool:
        """Whether `aclose` has been called."""
        return self._closed

    async def aclose(self) -> None:
        """Close the transport (or the client given) and its pooled connections."""
        self._closed = True
        if self.transport is not None:
            await self.transport.aclose()
        elif self.client is not None:
            await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": _WS_INTERNAL_ERROR})
            return
        message = await receive()
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        # Some servers open even a bodiless request with an empty "more" message: look past
        # it, so that a GET still goes out as a retryable request without chunked framing.
        while more and not body and message["type"] == "http.request":
            message = await receive()
            body = message.get("body", b"")
            more = message.get("more_body", False)
        if message["type"] != "http.request":
            return  # the client left before its body began
        watch = _Watch()
        content: bytes | _RequestBody
        if more:
            content = _RequestBody(body, receive, watch)
        else:
            content = body
            watch.start(receive)
        try:
            await self._exchange(scope, send, content, watch)
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except (_ClientGone, OSError):
            # OSError: a server that reports a vanished client from send (ASGI 2.4).
            pass
        finally:
            watch.stop()

    async def _exchange(
        self, scope: Scope, send: Send, content: bytes | _RequestBody, watch: _Watch
    ) -> None:
        timeline = scope.get(TIMELINE_SCOPE_KEY)
        started = Timeline.now() if timeline is not None else 0.0
        try:
            response = await self._send_upstream(scope, content)
        except (asyncio.CancelledError, _ClientGone):
            raise
        except Exception as exc:
            status, title, detail, headers = _failure(exc, scope)
            watch.finished = True  # a disconnect from now on is the end of our answer
            await send_problem(scope, send, status, detail, headers=headers, extra={"title": title})
            return
        finally:
            if timeline is not None:
                timeline.since("upstream", started)
        try:
            skip = _RESPONSE_SKIP | _named_in_connection(response.headers.raw)
            headers = [
                (name.lower(), value)
                for name, value in response.headers.raw
                if name.lower() not in skip and not name.lower().startswith(b"proxy-")
            ]
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers}
            )
            if response.is_stream_consumed:
                # A transport that answers with a body already read (httpx.MockTransport).
                watch.finished = True
                await send({"type": "http.response.body", "body": response.content})
                return
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watch.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _send_upstream(self, scope: Scope, content: bytes | _RequestBody) -> httpx.Response:
        path = scope.get(UPSTREAM_PATH_SCOPE_KEY)
        if path is None:
            path = scope.get("raw_path") or quote(scope["path"], safe=_PATH_SAFE).encode()
        query: bytes = scope.get("query_string", b"")
        target = path + b"?" + query if query else path
        picker = self.picker
        tries = max(1, len(picker))
        for tried in range(1, tries + 1):
            upstream = picker.pick()
            request = httpx.Request(
                scope["method"],
                httpx.URL(
                    scheme=upstream.scheme, host=upstream.host, port=upstream.port,
                    raw_path=upstream.base_path + target,
                ),
                headers=self._headers(scope, upstream),
                content=content,
                extensions=self._extensions,
            )  # fmt: skip
            try:
                return await self._send(request)
            except CircuitOpen:
                # Nothing was sent: another instance may be healthy.
                if tried == tries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _headers(self, scope: Scope, upstream: Upstream) -> list[tuple[bytes, bytes]]:
        """The request headers for ``upstream``: hop-by-hop removed, forwarding set."""
        out: list[tuple[bytes, bytes]] = []
        host = b""
        request_id = b""
        chains: dict[bytes, list[bytes]] = {}
        connection: list[bytes] = []
        skip = _REQUEST_SKIP
        for name, value in scope["headers"]:
            if name in skip:
                if name == b"host":
                    host = value
                elif name == b"x-request-id":
                    request_id = value
                elif name == b"connection":
                    connection.append(value)
                elif name in _FORWARDING:
                    chains.setdefault(name, []).append(value)
            elif not name.startswith(b"proxy-"):
                out.append((name, value))
        if connection:
            named = _named_in_connection([(b"connection", v) for v in connection])
            out = [(n, v) for n, v in out if n not in named]
        out.append((b"host", host if self.preserve_host and host else upstream.host_header))
        scoped = scope.get(REQUEST_ID_SCOPE_KEY)
        if isinstance(scoped, str):
            out.append((b"x-request-id", scoped.encode("ascii", "replace")))
        elif request_id and parse_request_id(request_id) is not None:
            out.append((b"x-request-id", request_id))
        self._forwarding(scope, host, chains, out)
        return out

    def _forwarding(
        self, scope: Scope, host: bytes, chains: dict[bytes, list[bytes]],
        out: list[tuple[bytes, bytes]],
    ) -> None:  # fmt: skip
        client = scope.get("client")
        peer = client[0] if client else ""
        known = self._peers.get(peer)
        if known is None:
            known = self._peer(peer)
        node, address, trusted = known
        scheme = scope.get("scheme", "http")
        proto = b"https" if scheme in ("https", "wss") else b"http"
        good_host = host if host and len(host) <= 255 and _HOST_VALUE.fullmatch(host) else b""

        element = b"for=" + node + b";proto=" + proto
        if good_host:
            element += b';host="' + good_host + b'"'
        xff = [address] if address else []
        if trusted:
            forwarded = chains.get(b"forwarded", [])
            out.append((b"forwarded", b", ".join([*forwarded, element])))
            xff = [*chains.get(b"x-forwarded-for", []), *xff]
            original_proto = chains.get(b"x-forwarded-proto")
            if original_proto:
                proto = original_proto[0]
            original_host = chains.get(b"x-forwarded-host")
            if original_host:
                good_host = original_host[0]
        else:
            out.append((b"forwarded", element))
        if xff:
            out.append((b"x-forwarded-for", b", ".join(xff)))
        out.append((b"x-forwarded-proto", proto))
        if good_host:
            out.append((b"x-forwarded-host", good_host))

    def _peer(self, peer: str) -> tuple[bytes, bytes, bool]:
        """A peer's ``Forwarded`` node, ``X-Forwarded-For`` entry and trust, remembered."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # none, a unix socket path or a test client's name
            known = (b"unknown", b"", False)
        else:
            text = str(address).encode()
            node = b'"[' + text + b']"' if address.version == 6 else text
            trusted = any(address in network for network in self._trusted)
            known = (node, text, trusted)
        if len(self._peers) >= _MAX_PEERS:
            self._peers.clear()  # a flood of distinct peers must not grow memory
        self._peers[peer] = known
        return known

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self.aclose)


def _named_in_connection(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names listed in ``Connection`` headers (lowercased)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(named)


def _failure(exc: Exception, scope: Scope) -> tuple[int, str, str, list[tuple[bytes, bytes]]]:
    """The problem answering a request the upstream could not serve."""
    if isinstance(exc, CircuitOpen):
        headers = []
        if math.isfinite(exc.retry_after):
            headers.append((b"retry-after", b"%d" % max(1, math.ceil(exc.retry_after))))
        detail = "the upstream service is failing; its circuit breaker is open"
        return 503, "Service Unavailable", detail, headers
    if isinstance(exc, httpx.PoolTimeout):
        return 503, "Service Unavailable", "no connection to the upstream became free", []
    # TimeoutError: the retry policy cut an attempt off at its deadline.
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return 504, "Gateway Timeout", "the upstream service did not answer in time", []
    if isinstance(exc, httpx.HTTPError):
        return 502, "Bad Gateway", "the upstream service could not be reached", []
    # Never a 500 from the proxy: a bug or an odd request still gets a gateway error.
    _log.error("proxying %s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
    return 502, "Bad Gateway", "the request could not be proxied", []
