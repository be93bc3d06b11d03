"""Refused credentials count against the rate limits: authentication's 400/401 held back.

`AuthenticationMiddleware` must run ahead of the rate limiter, whose tiers come from the
principal it sets; on its own it answers a bad token at once, so a client could send forged
or expired tokens as fast as it likes, each costing a signature check and none counted.
`DeferredAuthentication` keeps the refusal instead of sending it: the request goes on as
anonymous through the limiter (counted against the caller's anonymous and per-IP limits,
and answered 429 once they are spent), and `AnswerDeferred`, placed below the limiter,
sends the refusal it kept, with the limiter's ``RateLimit`` headers. Guessing tokens is
then throttled like any anonymous traffic. `Gateway` puts the pair around its rate limit
layer by default.

An accepted credential costs nothing extra: the real ``send`` is passed on untouched.
Websocket handshakes are refused at once.

With ``refused_anyway`` (`Gateway` gives it the per-IP limit's check), a bearer token that
would have to be verified (not one the authenticator remembers) is not verified at all
while that check says the limiter will refuse the request: the request goes on as
anonymous and gets its 429, so a client past its per-IP limit costs no signature check.
Should the limiter let it through after all (its budget refilled in between),
`AnswerDeferred` authenticates it there, before the app.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sysdesign_kit.events import Listener
from sysdesign_kit.gateway._respond import ASGIApp, Message, Receive, Scope, Send
from sysdesign_kit.gateway.authentication import (
    DEFAULT_MAX_CREDENTIAL_LENGTH,
    AuthenticationMiddleware,
)
from sysdesign_kit.gateway.authenticator import Authenticator
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal

__all__ = ["DEFERRED_SCOPE_KEY", "AnswerDeferred", "DeferredAuthentication"]

_log = logging.getLogger("sysdesign_kit.gateway")

#: Scope key holding a refusal kept for `AnswerDeferred` (the response's ASGI messages).
DEFERRED_SCOPE_KEY = "sysdesign_kit.deferred_refusal"
#: Scope key carrying the real ``send`` past the authentication layer.
_SEND = "sysdesign_kit.deferred_send"
#: Scope key holding the authentication put off for `AnswerDeferred` (``refused_anyway``).
_LATE = "sysdesign_kit.deferred_authentication"


class _Keep:
    """The ``send`` handed to the authentication layer: keeps what it sends."""

    __slots__ = ("messages", "passed")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.passed = False

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


class DeferredAuthentication:
    """Pure ASGI: `AuthenticationMiddleware` whose HTTP refusals wait for `AnswerDeferred`.

    Args:
        app: the rest of the chain (the rate limiter first, `AnswerDeferred` below it).
        bearer, api_key, api_key_header, required, anonymous, realm,
        max_credential_length, websockets, retry_after, listeners: as for
            `AuthenticationMiddleware`.
        refused_anyway: an async check that the rate limiter below will refuse the request
            whoever sends it (a spent per-IP limit); while it says so, credentials that
            need verifying are not verified (see above).

    Raises:
        ConfigurationError: what `AuthenticationMiddleware` raises for its options.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bearer: Authenticator | None = None,
        api_key: Authenticator | None = None,
        api_key_header: str = "x-api-key",
        required: bool = False,
        anonymous: Principal | None = None,
        realm: str | None = "api",
        max_credential_length: int = DEFAULT_MAX_CREDENTIAL_LENGTH,
        websockets: bool = True,
        retry_after: int = 5,
        listeners: Iterable[Listener] = (),
        refused_anyway: Callable[[Scope], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.refused_anyway = refused_anyway
        options: dict[str, Any] = {
            "bearer": bearer,
            "api_key": api_key,
            "api_key_header": api_key_header,
            "required": required,
            "anonymous": anonymous,
            "realm": realm,
            "max_credential_length": max_credential_length,
            "websockets": websockets,
            "retry_after": retry_after,
            "listeners": list(listeners),  # used by both layers
        }
        self._deferring = AuthenticationMiddleware(self._accepted, **options)
        self._direct = AuthenticationMiddleware(app, **options)

    @property
    def direct(self) -> AuthenticationMiddleware:
        """The same authentication, answering its refusals at once (websockets use it)."""
        return self._direct

    async def _accepted(self, scope: Scope, receive: Receive, send: Any) -> None:
        # Reached only when authentication let the request through: the rest of the chain
        # answers with the real send, not the keeper.
        send.passed = True
        await self.app(scope, receive, scope.pop(_SEND))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._direct(scope, receive, send)
            return
        check = self.refused_anyway
        if check is not None and self._direct.would_verify(scope) and await _spent(check, scope):
            # Passed on as anonymous: the limiter answers 429, or AnswerDeferred
            # authenticates it if the limiter let it through after all.
            if self._direct.anonymous is not None:
                scope[PRINCIPAL_SCOPE_KEY] = self._direct.anonymous
            scope[_LATE] = self._direct
            await self.app(scope, receive, send)
            return
        keep = _Keep()
        scope[_SEND] = send
        await self._deferring(scope, receive, keep)
        if keep.passed:
            return
        scope.pop(_SEND, None)
        scope[DEFERRED_SCOPE_KEY] = keep.messages
        await self.app(scope, receive, send)


class AnswerDeferred:
    """Pure ASGI: send the refusal `DeferredAuthentication` kept, if any; else go on.

    Placed below the rate limiter, so the refusal carries its ``RateLimit`` headers and a
    caller over its limit gets the 429 instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages = scope.get(DEFERRED_SCOPE_KEY)
        if messages is None:
            late = scope.pop(_LATE, None)
            if late is None:
                await self.app(scope, receive, send)
                return
            # Authentication put off above: run it now, in front of the rest of the chain
            # (a copy of that layer, pointed here; this path is rare).
            scope.pop(PRINCIPAL_SCOPE_KEY, None)
            here = copy.copy(late)
            here.app = self.app
            await here(scope, receive, send)
            return
        for message in messages:
            await send(message)


async def _spent(check: Callable[[Scope], Awaitable[bool]], scope: Scope) -> bool:
    """``check(scope)``; a check that fails counts as "not spent" (verify as usual)."""
    try:
        return bool(await check(scope))
    except Exception:
        _log.debug("refused_anyway check failed; verifying as usual", exc_info=True)
        return False
