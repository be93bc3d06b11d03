"""Drive a pure-ASGI layer with a hand-built scope and collect what it sends (raw bytes in
and out, so tests can send headers no HTTP client would)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sysdesign_kit.errors import AuthenticationFailed
from sysdesign_kit.principal import Principal, get_principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


@dataclass
class Answer:
    """What the layer sent back, and what the app below it saw."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    messages: list[Message] = field(default_factory=list)
    principal: Principal | None = None
    reached_app: bool = False

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class EchoApp:
    """The protected app: answers 200 and remembers the principal it was given."""

    def __init__(self) -> None:
        self.principal: Principal | None = None
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        self.principal = get_principal(scope)
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    layer: ASGIApp,
    app: EchoApp,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    kind: str = "http",
    extensions: dict[str, Any] | None = None,
) -> Answer:
    """One request through ``layer`` (which wraps ``app``)."""
    answer = Answer()
    before = app.calls
    scope: Scope = {
        "type": kind,
        "method": "GET",
        "path": "/",
        "headers": list(headers),
        "extensions": extensions or {},
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        answer.messages.append(message)
        if message["type"] in ("http.response.start", "websocket.http.response.start"):
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))
        elif message["type"] in ("http.response.body", "websocket.http.response.body"):
            answer.body += message.get("body", b"")

    await layer(scope, receive, send)
    answer.reached_app = app.calls > before
    answer.principal = app.principal if answer.reached_app else None
    return answer


class FakeAuthenticator:
    """An `Authenticator` over a table: credential -> Principal, or an exception to raise."""

    def __init__(self, method: str, table: dict[str, Principal | BaseException]) -> None:
        self.method = method
        self.table = table
        self.seen: list[str] = []

    async def authenticate(self, credential: str) -> Principal:
        self.seen.append(credential)
        outcome = self.table.get(credential)
        if outcome is None:
            raise AuthenticationFailed(
                "unknown credential", error="invalid_token", description="invalid token"
            )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
