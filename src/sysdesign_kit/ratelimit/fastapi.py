"""A FastAPI dependency: ``Depends(RateLimit(limiter, key=...))`` on a route or router.

This is the only module of the kit that imports FastAPI; import it only where FastAPI is
installed. For limits on every route prefer `RateLimitMiddleware`, which also covers
requests no route matches and costs no dependency resolution.

Allowed requests get ``RateLimit-Policy`` and ``RateLimit`` on their response (FastAPI
merges headers set on the injected `Response` when the endpoint returns data, not when it
returns a `Response` object itself); denied ones raise ``HTTPException(429)`` with
``Retry-After`` and the same fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import HTTPException, Request, Response

from sysdesign_kit.errors import ConfigurationError, InvalidInput
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.headers import RateLimitHeaders, retry_after_seconds
from sysdesign_kit.ratelimit.keys import by_ip, safe_key
from sysdesign_kit.ratelimit.limiter import MAX_KEY_LENGTH, RateLimiter

__all__ = ["RateLimit"]


class RateLimit:
    """A FastAPI dependency charging ``limiter`` once per request.

    Args:
        limiter: the policy.
        key: a constant string, or a callable given the `Request` that returns the key.
            Default: the client address (``"ip:<address>"``, see `ClientIP`).
        cost: weight of one request.
        trusted_proxies: for the default key: proxies whose ``X-Forwarded-For`` is believed.
        legacy_headers: also send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.

    The dependency's value is the `RateLimitDecision`, for endpoints that want it.

    Raises:
        ConfigurationError: a policy name that cannot be sent in a header, a bad key.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        key: str | Callable[[Request], str] | None = None,
        cost: int = 1,
        trusted_proxies: Sequence[str] = (),
        legacy_headers: bool = False,
    ) -> None:
        self.limiter = limiter
        self.cost = cost
        if key is None:
            by_address = by_ip(trusted_proxies)
            self._key: Callable[[Request], str] = lambda request: str(by_address(request.scope))
        elif isinstance(key, str):
            constant = safe_key("", key)
            self._key = lambda request: constant
        elif callable(key):
            self._key = key
        else:
            raise ConfigurationError(f"key must be a str or a callable, got {type(key)!r}")
        self._headers = RateLimitHeaders([limiter], legacy=legacy_headers)

    async def __call__(self, request: Request, response: Response) -> RateLimitDecision:
        """Charge the request; raise 429 (or 400 for an unusable key) when it may not run."""
        key = self._key(request)
        if type(key) is str and not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii()):
            key = safe_key("", key)
        try:
            decision = await self.limiter.hit(key, self.cost)
        except InvalidInput as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        if decision.blocked:
            seconds = retry_after_seconds([decision])
            raise HTTPException(
                status_code=429,
                detail=f"rate limit {decision.policy} exceeded; retry in {seconds} s",
                headers=self._headers.as_dict([decision], retry_after=True),
            )
        response.headers.update(self._headers.as_dict([decision]))
        return decision
