"""``RateLimitMiddleware``: pure ASGI rate limiting for Starlette, FastAPI or any ASGI app.

Per HTTP request: find the limits that apply (`TieredLimits` or your `LimitRule`\\ s),
check them all in one all-or-nothing ``hit_all`` (one round trip on Redis), and either
answer ``429`` with ``Retry-After`` and an RFC 9457 problem body, or call the app and add
``RateLimit-Policy`` / ``RateLimit`` to its response. The decisions are left in
``scope["sysdesign_kit.ratelimit"]`` for the layers below.

Never a 500 of its own making: key functions fall back on malformed headers, a key function
that raises `InvalidInput` gets a 400 problem, and a backend that fails in any way is
handled by each limiter's failure policy (fail open or closed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidInput
from sysdesign_kit.problems import send_problem
from sysdesign_kit.ratelimit.backend import LimiterBackend
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.headers import RateLimitHeaders, retry_after_seconds
from sysdesign_kit.ratelimit.limiter import RateLimiter, _finish_all, hit_all
from sysdesign_kit.ratelimit.memory import MemoryBackend
from sysdesign_kit.ratelimit.tiers import LimitRule, LimitSource, RuleSet, TieredLimits
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY

__all__ = ["DEFAULT_EXEMPT_PATHS", "SCOPE_KEY", "RateLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Pairs = list[tuple[RateLimiter, str]]
Fused = Callable[[Pairs, int], list[RateLimitDecision]]

#: Where the middleware leaves its list of `RateLimitDecision` for later layers.
SCOPE_KEY = "sysdesign_kit.ratelimit"
DEFAULT_EXEMPT_PATHS = ("/health", "/live", "/ready", "/metrics")
#: The problem type of a 429 (IANA HTTP problem types registry).
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"

_log = logging.getLogger("sysdesign_kit.ratelimit")
_clock = time.perf_counter  # the Timeline's clock


class RateLimitMiddleware:
    """Rate-limit every HTTP request (and websockets, if asked) before the app sees it.

    Args:
        app: the ASGI app to protect.
        limits: a `TieredLimits` (see `tiered_limits`), a `RuleSet`, or a sequence of
            `LimitRule`.
        exempt_paths: paths never limited, each matching itself and everything below it
            (``"/health"`` covers ``/health/db``).
        limit_websockets: limit websocket handshakes too; a denied one is refused with an
            HTTP 429 when the server supports the ``websocket.http.response`` extension,
            else closed with code 1008.
        legacy_headers: also send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.

    Raises:
        ConfigurationError: limits on different backends, unusable policy names or exempt
            paths that are not paths.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: TieredLimits | RuleSet | Sequence[LimitRule],
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT_PATHS,
        limit_websockets: bool = False,
        legacy_headers: bool = False,
    ) -> None:
        self.app = app
        source: LimitSource = (
            limits if isinstance(limits, TieredLimits | RuleSet) else RuleSet(limits)
        )
        self.limits = source
        self._resolve = source.resolve
        # A backend in this process answers at once: decide without awaiting coroutines.
        # Only for our own sets, whose pairs are known to be clean (a subclass's resolve
        # goes through hit_all's checks).
        self._local = type(source) in (TieredLimits, RuleSet) and all(
            limiter.backend.local for limiter in source.limiters
        )
        self._fused = _fused(source.limiters[0].backend)
        self._headers = RateLimitHeaders(source.limiters, legacy=legacy_headers)
        for policy_set in source.policy_sets():
            self._headers.policy_value(policy_set)
        if isinstance(exempt_paths, str):
            raise ConfigurationError("exempt_paths must be a list of paths, not one string")
        paths = {path.rstrip("/") or "/" for path in exempt_paths}
        for path in paths:
            if not path.startswith("/"):
                raise ConfigurationError(f"exempt path {path!r} must start with '/'")
        self._exempt = frozenset(paths)
        self._exempt_prefixes = tuple(path + "/" for path in paths if path != "/")
        self._websockets = limit_websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and (kind != "websocket" or not self._websockets):
            await self.app(scope, receive, send)
            return
        if self._exempt and self.exempts(scope):
            await self.app(scope, receive, send)
            return
        timeline = scope.get(TIMELINE_SCOPE_KEY)
        started = _clock() if timeline is not None else 0.0
        try:
            if self._local:
                decisions = self.decide_here(scope)
            else:
                pairs = self._resolve(scope)
                decisions = await _decide(pairs) if pairs else None
        except InvalidInput as exc:
            await self.refuse_input(scope, send, exc)
            return
        finally:
            if timeline is not None:
                timeline.since("ratelimit", started)
        if decisions is None:
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = decisions
        for decision in decisions:
            if not decision.allowed and decision.blocked:
                await self.deny(scope, send, decisions)
                return
        headers = self._headers.render(decisions)
        start = "http.response.start" if kind == "http" else "websocket.accept"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == start:
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @property
    def local(self) -> bool:
        """Its limits decide in this process (`decide_here` can be used)."""
        return self._local

    def exempts(self, scope: Scope) -> bool:
        """The request's path is one of ``exempt_paths`` (or below one)."""
        path = scope.get("path", "")
        return path in self._exempt or path.startswith(self._exempt_prefixes)

    def decide_here(self, scope: Scope) -> list[RateLimitDecision] | None:
        """The limits' decisions for the request, charged, when they decide in this process
        (`local`); None when no limit applies. A layer that fuses this one's work into its
        own frame calls it, then `deny` or `headers`, as ``__call__`` does.

        Raises:
            InvalidInput: the request yields no usable key (answer it with `refuse_input`).
        """
        pairs = self._resolve(scope)
        return _decide_now(pairs, self._fused) if pairs else None

    def headers(self, decisions: Sequence[RateLimitDecision]) -> list[tuple[bytes, bytes]]:
        """The ``RateLimit-Policy`` / ``RateLimit`` (and legacy) fields for a response."""
        return self._headers.render(decisions)

    async def refuse_input(self, scope: Scope, send: Send, exc: InvalidInput) -> None:
        """Answer 400: the request gave no usable rate-limit key."""
        await self._reject(scope, send, 400, "Bad Request", str(exc), [])

    async def deny(self, scope: Scope, send: Send, decisions: list[RateLimitDecision]) -> None:
        """Answer 429 for ``decisions``, one of which blocks the request."""
        violated = [d.policy for d in decisions if d.blocked]
        seconds = retry_after_seconds(decisions)
        detail = (
            f"rate limit {', '.join(violated)} exceeded; retry in {seconds} "
            f"second{'s' if seconds != 1 else ''}"
        )
        extra = {"retry_after": seconds, "violated-policies": violated}
        headers = self._headers.render(decisions, retry_after=True)
        await self._reject(scope, send, 429, "Too Many Requests", detail, headers, extra)

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        status: int,
        title: str,
        detail: str,
        headers: list[tuple[bytes, bytes]],
        extra: dict[str, object] | None = None,
    ) -> None:
        await send_problem(
            scope, send, status, detail, headers=headers, extra=extra, title=title,
            type=QUOTA_EXCEEDED if status == 429 else "about:blank",
        )  # fmt: skip


async def _decide(pairs: Pairs) -> list[RateLimitDecision]:
    """One all-or-nothing check of every pair; the failure policy covers any backend error.

    With shadow limiters in the set, a shadow denial must not stop the enforced limits
    from being charged (the request goes through), so they are charged on their own then.
    """
    try:
        decisions = await hit_all(pairs)
    except InvalidInput:
        raise
    except Exception as exc:
        return _failed(pairs, exc)
    for decision in decisions:
        if not decision.allowed:
            break
    else:
        return decisions
    enforced = _enforced(decisions, pairs)
    return decisions if enforced is None else _merged(decisions, await _decide(enforced))


def _fused(backend: LimiterBackend) -> Fused | None:
    """The memory backend's `decide_limits`, unless a subclass decides in its own way."""
    if isinstance(backend, MemoryBackend) and (
        type(backend).decide_many is MemoryBackend.decide_many
    ):
        return backend.decide_limits
    return None


def _decide_now(pairs: Pairs, fused: Fused | None) -> list[RateLimitDecision]:
    """`_decide` for a backend in this process, without a coroutine per request.

    The pairs come from the middleware's limits: one shared backend (checked when the set
    was built) and keys already cleaned, so `hit_all`'s checks are not repeated here.
    """
    try:
        if fused is not None:
            decisions = fused(pairs, 1)
            for limiter, _ in pairs:
                if limiter.events.listeners:  # rare: look at every pair only then
                    for decision, (listened, key) in zip(decisions, pairs, strict=True):
                        if listened.events.listeners:
                            listened._publish(key, 1, decision)
                    break
        else:
            bound = [(limiter._bound, key) for limiter, key in pairs]
            decisions = _finish_all(pairs, pairs[0][0].backend.decide_many(bound, 1), 1)
    except InvalidInput:
        raise
    except Exception as exc:
        return _failed(pairs, exc)
    for decision in decisions:
        if not decision.allowed:
            break
    else:
        return decisions
    enforced = _enforced(decisions, pairs)
    return decisions if enforced is None else _merged(decisions, _decide_now(enforced, fused))


def _failed(pairs: Pairs, exc: Exception) -> list[RateLimitDecision]:
    """Every pair decided by its limiter's failure policy: never a 500 from the limiter."""
    if not isinstance(exc, BackendUnavailable):
        # A backend bug or an unwrapped driver error: logged, and wrapped for the policy.
        _log.exception("rate-limit backend raised; applying each limiter's failure policy")
        wrapped = BackendUnavailable(f"{type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        exc = wrapped
    return [limiter._degraded(key, 1, exc, "hit_all") for limiter, key in pairs]


def _enforced(decisions: list[RateLimitDecision], pairs: Pairs) -> Pairs | None:
    """After a denial: the allowed pairs to charge again when only shadow limiters denied;
    None when a limit blocks (nothing is charged) or no enforced limit is left."""
    for decision in decisions:
        if decision.blocked:
            return None
    enforced = [(d.limiter, key) for d, (_, key) in zip(decisions, pairs, strict=True) if d.allowed]
    return enforced or None


def _merged(
    decisions: list[RateLimitDecision], charged: list[RateLimitDecision]
) -> list[RateLimitDecision]:
    """``decisions`` with each allowed one replaced by its decision from charging the
    enforced limits again (``charged``, in the same order)."""
    again = iter(charged)
    return [next(again) if d.allowed else d for d in decisions]
