"""Refused tokens count against the rate limits, as unknown API keys do.

The kit's `AuthenticationMiddleware` answers a bad token (400/401) at once. It must run
ahead of the rate limiter, whose tiers come from the principal it sets, so on its own a
client could send forged or expired tokens as fast as it likes, each one costing an RSA
signature check and none of them counted. `DeferredAuthentication` keeps the refusal
instead of sending it: the request goes on as anonymous through the limiter (counted
against the caller's anonymous and per-IP limits, and answered 429 once they are spent),
and `AnswerDeferred`, placed below the limiter, sends the refusal it kept. Guessing
tokens is throttled like any anonymous traffic.

An accepted token costs nothing extra: the layer passes the real ``send`` on untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sysdesign_kit.events import Listener
from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
from sysdesign_kit.gateway.authenticator import Authenticator

__all__ = ["AnswerDeferred", "DeferredAuthentication"]

#: Scope key holding the refusal kept for `AnswerDeferred` (the response's ASGI messages).
_DEFERRED = "reference_system.deferred_refusal"
#: Scope key carrying the real ``send`` past the authentication layer.
_SEND = "reference_system.send"


class _Keep:
    """The ``send`` handed to the authentication layer: keeps what it sends."""

    __slots__ = ("messages", "passed")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.passed = False

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


class DeferredAuthentication:
    """Pure ASGI: `AuthenticationMiddleware` whose HTTP refusals wait below the limiter.

    Websocket handshakes are refused at once (the demo serves none).

    Args:
        app: the rest of the chain (the rate limiter first).
        bearer: verifies ``Authorization: Bearer`` tokens.
        listeners: receive `AuthSucceeded` and `AuthFailed`.
    """

    def __init__(
        self, app: ASGIApp, *, bearer: Authenticator, listeners: Iterable[Listener] = ()
    ) -> None:
        self.app = app
        listeners = list(listeners)
        self._deferring = AuthenticationMiddleware(
            self._accepted, bearer=bearer, listeners=listeners
        )
        self._direct = AuthenticationMiddleware(app, bearer=bearer, listeners=listeners)

    async def _accepted(self, scope: Scope, receive: Receive, send: Any) -> None:
        # Reached only when authentication let the request through: the rest of the chain
        # answers with the real send, not the keeper.
        send.passed = True
        await self.app(scope, receive, scope.pop(_SEND))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._direct(scope, receive, send)
            return
        keep = _Keep()
        scope[_SEND] = send
        await self._deferring(scope, receive, keep)
        if keep.passed:
            return
        scope.pop(_SEND, None)
        scope[_DEFERRED] = keep.messages
        await self.app(scope, receive, send)


class AnswerDeferred:
    """Pure ASGI: send the refusal `DeferredAuthentication` kept, if any.

    Placed below the rate limiter, so the refusal carries its ``RateLimit`` headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages = scope.get(_DEFERRED)
        if messages is None:
            await self.app(scope, receive, send)
            return
        for message in messages:
            await send(message)
