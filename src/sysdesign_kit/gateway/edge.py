"""`FusedEdge`: a gateway's outer layers on their hot path, in one frame.

Stacked as separate ASGI apps, observability, authentication, the rate limiter and
authorization each cost a coroutine frame, most a ``send`` wrapper, and their own walk over
the scope, on every request. For the common request none of them has anything to await:
it carries no credential or a bearer token the authenticator verified before, and the
limits decide in this process. `FusedEdge` serves such a request in one frame, by calling
the same layer objects' steps in the same order (`AuthenticationMiddleware.peek`,
`RateLimitMiddleware.decide_here`, `AuthorizationMiddleware.judge`...), with the rate
limiter's response headers added by the observability layer's own ``send``. Every other
request (a token to verify, an API key, a header to refuse, a websocket) goes through the
stacked layers below observability, unchanged.

The answers are the same either way: status, body, headers, principal, request id,
timeline stages, metrics and events (``tests/gateway/test_edge.py`` sends the same requests
through both). `Gateway.wrap` puts one in front of its stack whenever its plan starts with
observability, authentication and a rate limit that decides in this process.
"""

from __future__ import annotations

import time

from sysdesign_kit.errors import ConfigurationError, InvalidInput
from sysdesign_kit.events import AuthSucceeded
from sysdesign_kit.gateway._respond import ASGIApp, Receive, Scope, Send
from sysdesign_kit.gateway.authentication import UNDECIDED, AuthenticationMiddleware
from sysdesign_kit.gateway.rbac import AuthorizationMiddleware
from sysdesign_kit.observability import ObservabilityMiddleware
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal
from sysdesign_kit.ratelimit.middleware import SCOPE_KEY, RateLimitMiddleware
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY

__all__ = ["FusedEdge"]

_clock = time.perf_counter  # the Timeline's clock


class FusedEdge:
    """Pure ASGI: observability, authentication, rate limit and authorization in one frame
    for requests that need no await, the stacked layers for the rest.

    Args:
        stack: the whole stack, outermost layer first (``observability``); non-HTTP
            requests go there.
        observability: the stack's observability layer (its ``app`` is the rest of the
            stack: requests off the hot path go there, observed as usual).
        authentication: the authentication layer whose `peek` decides the hot path (for a
            `DeferredAuthentication`, its direct twin: on the hot path nothing is refused).
        rate_limit: the stack's rate limiter; it must decide in this process (``local``).
        authorization: the stack's authorization layer, or None.
        app: the rest of the stack below the rate limiter (with an authorization layer,
            that layer's own ``app`` is used).

    Raises:
        ConfigurationError: a rate limiter that does not decide in this process.
    """

    def __init__(
        self,
        *,
        stack: ASGIApp,
        observability: ObservabilityMiddleware,
        authentication: AuthenticationMiddleware,
        rate_limit: RateLimitMiddleware,
        authorization: AuthorizationMiddleware | None,
        app: ASGIApp,
    ) -> None:
        if not rate_limit.local:
            raise ConfigurationError("FusedEdge needs a rate limiter that decides in this process")
        self.stack = stack
        self.app = app
        self._observe = observability.observe
        self._below = observability.app
        self._auth = authentication
        self._limiter = rate_limit
        self._authz = authorization
        self._judged = authorization is not None and authorization.policy.active

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.stack(scope, receive, send)
            return
        await self._observe(scope, receive, send, self._edge)

    async def _edge(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ``send`` is the observability layer's: its ``extra`` headers go on the app's answer.
        auth = self._auth
        started = _clock()
        principal = auth.peek(scope)
        if principal is UNDECIDED:
            await self._below(scope, receive, send)
            return
        timeline = scope[TIMELINE_SCOPE_KEY]
        who = principal if isinstance(principal, Principal) else None
        if who is not None:
            scope[PRINCIPAL_SCOPE_KEY] = who
            bearer = auth.bearer
            if who is not auth.anonymous and auth.events.listeners and bearer is not None:
                auth.events.publish(AuthSucceeded("auth", bearer.method, who.subject))
        now = _clock()
        timeline.add("auth", now - started)
        limiter = self._limiter
        if not limiter.exempts(scope):
            try:
                decisions = limiter.decide_here(scope)
            except InvalidInput as exc:
                timeline.since("ratelimit", now)
                await limiter.refuse_input(scope, send, exc)
                return
            timeline.since("ratelimit", now)
            if decisions is not None:
                scope[SCOPE_KEY] = decisions
                for decision in decisions:
                    if not decision.allowed and decision.blocked:
                        await limiter.deny(scope, send, decisions)
                        return
                send.extra = limiter.headers(decisions)  # type: ignore[attr-defined]
        authz = self._authz
        if authz is None:
            await self.app(scope, receive, send)
            return
        if self._judged:
            denial = authz.judge(scope, who)
            if denial is not None and not authz.dry_run:
                await authz.refuse(scope, send, denial)
                return
        if authz.checks_endpoints:
            await authz.forward(scope, receive, send, who)
        else:
            await authz.app(scope, receive, send)
