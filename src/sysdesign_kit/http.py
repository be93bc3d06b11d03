"""`ResilientTransport`: timeouts, retries with a budget and a breaker per host, for httpx.

::

    client = httpx.Client(transport=ResilientTransport())
    client = httpx.AsyncClient(transport=AsyncResilientTransport())

Each wraps an inner transport (httpx's own by default, any other given) and, per request:

1. finds the breaker of the request's origin (``http:{scheme}://{host}:{port}``) in its
   `BreakerRegistry`; an open breaker fails the request fast with `CircuitOpen` (a
   `Rejected` with ``retry_after``), which is never retried;
2. for an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE, TRACE, or any request
   carrying an ``Idempotency-Key`` header) with a re-readable body, retries connection
   failures, timeouts and 502/503/504 answers under a `Retry` policy (the seed's 4 calls,
   1 s -> 2 s -> 4 s with full jitter), waiting what a ``Retry-After`` header says instead
   when there is one, within a `RetryBudget` per origin, so retries add at most about 20%
   load to a dependency in trouble; other requests are sent once;
3. bounds the whole request, retries and waits included, by ``total_timeout`` (the seed's
   60 s): every attempt gets the time that remains as its httpx timeouts, and an async
   attempt is cut off when it runs out (`httpx.TimeoutException`). A sync attempt cannot be
   interrupted: its connect, read and write timeouts are capped at the time left, so a
   server sending a byte just before each read timeout could hold it longer.

Timeouts: a client left at httpx's default (5 s for everything) gets the transport's
``timeout``, by default the seed's connect 5 s / read 30 s; a timeout set on the client or
the request is kept (and capped by what remains of the total).

What the breaker counts as failed: transport errors (connection refused or reset, timeouts)
and 5xx answers; a 4xx is the client's mistake and counts as a success. A response that
is retried is closed before the next attempt; the last one is returned as httpx returned it
(unread, for streaming). The components publish their own events (`BreakerTransitioned`,
`BreakerRejected`, `BreakerCallFinished`, `RetryAttempted`, `RetryGaveUp`) to the
``listeners`` given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from sysdesign_kit.breaker import BreakerRegistry, CircuitBreaker
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Listener
from sysdesign_kit.retry import Retry, RetryBudget

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "SEED_TIMEOUT",
    "SEED_TOTAL_TIMEOUT",
    "AsyncResilientTransport",
    "ResilientTransport",
    "default_retry",
]

#: The seed's timeouts: connect 5 s, read (and write, pool) 30 s.
SEED_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: The seed's total time for one request, retries and waits included.
SEED_TOTAL_TIMEOUT = 60.0
#: Methods RFC 9110 defines as idempotent: repeating them has the effect of sending once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Answers worth another try: the gateway or server says it is (momentarily) unable.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Failures worth another try: the request may not have arrived, or its answer was lost.
RETRY_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_HTTPX_DEFAULT_TIMEOUT = httpx.Timeout(5.0).as_dict()
_MAX_ORIGINS = 1024  # per-origin budgets kept; past that, origins share one


def _server_failure(response: Any) -> bool:
    return isinstance(response, httpx.Response) and response.status_code >= 500


def default_retry(
    *, statuses: Iterable[int] = RETRY_STATUSES, deadline: float | None = SEED_TOTAL_TIMEOUT,
    **changes: Any,
) -> Retry:  # fmt: skip
    """The transports' retry policy, with ``changes`` (any `Retry` argument).

    Retries `RETRY_ERRORS` and responses whose status is in ``statuses``: 4 calls, waits
    1 s -> 2 s -> 4 s with full jitter, a server's ``Retry-After`` honoured (capped at 30 s),
    ``deadline`` seconds in all.

    Raises:
        ConfigurationError: a change is out of range, or ``statuses`` are not status codes.
    """
    wanted = frozenset(statuses)
    if not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in wanted):
        raise ConfigurationError(f"statuses must be HTTP status codes, got {sorted(wanted)!r}")

    def retry_status(response: Any) -> bool:
        return isinstance(response, httpx.Response) and response.status_code in wanted

    options: dict[str, Any] = {"on": RETRY_ERRORS, "on_result": retry_status, "deadline": deadline}
    options.update(changes)
    return Retry(**options)


class _Resilience:
    """What both transports share: settings, breakers and budgets per origin, policies."""

    def __init__(
        self,
        *,
        retry: Retry | None,
        breakers: BreakerRegistry | None,
        breaker_settings: Mapping[str, Any] | None,
        timeout: httpx.Timeout,
        total_timeout: float | None,
        budget: Callable[[], RetryBudget | None],
        idempotent_methods: Iterable[str],
        clock: Clock,
        listeners: Iterable[Listener],
    ) -> None:
        if not isinstance(timeout, httpx.Timeout):
            raise ConfigurationError(f"timeout must be an httpx.Timeout, got {timeout!r}")
        if total_timeout is not None and (
            isinstance(total_timeout, bool)
            or not isinstance(total_timeout, int | float)
            or not 0 < total_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"total_timeout must be positive finite seconds or None, got {total_timeout!r}"
            )
        methods = frozenset(m.upper() for m in idempotent_methods)
        if not all(isinstance(m, str) and m.isalpha() for m in methods):
            raise ConfigurationError(f"idempotent_methods must be method names, got {methods!r}")
        self.listeners = tuple(listeners)
        self.timeout = timeout
        self.total_timeout = None if total_timeout is None else float(total_timeout)
        self.methods = methods
        self.clock = clock
        if not callable(budget):
            raise ConfigurationError(f"budget must make a RetryBudget (or None), got {budget!r}")
        # Made once here: a factory that fails, fails at construction.
        sample = budget()
        if sample is not None and not isinstance(sample, RetryBudget):
            raise ConfigurationError(f"budget() must return a RetryBudget or None, got {sample!r}")
        self.budget = budget
        if retry is None:
            retry = default_retry(
                deadline=self.total_timeout, clock=clock, listeners=self.listeners
            )
        elif not isinstance(retry, Retry):
            raise ConfigurationError(f"retry must be a Retry policy or None, got {retry!r}")
        self.retry = retry
        if breakers is None:
            breakers = BreakerRegistry(clock=clock, listeners=self.listeners)
        elif not isinstance(breakers, BreakerRegistry):
            raise ConfigurationError(f"breakers must be a BreakerRegistry, got {breakers!r}")
        self.breakers = breakers
        settings: dict[str, Any] = {"failure_on": RETRY_ERRORS, "failure_if": _server_failure}
        settings.update(breaker_settings or {})
        # Fail at construction on a bad setting, not at the first request.
        CircuitBreaker("http:settings-check", clock=clock, **settings)
        self.breaker_settings = settings
        self._policies: dict[str, Retry] = {}
        self._shared: Retry | None = None

    def origin(self, url: httpx.URL) -> str:
        port = url.port or (443 if url.scheme == "https" else 80)
        return f"http:{url.scheme}://{url.host}:{port}"

    def breaker(self, origin: str) -> CircuitBreaker:
        breakers = self.breakers
        if origin in breakers:
            return breakers[origin]
        return breakers.get(origin, **self.breaker_settings)

    def policy(self, origin: str) -> Retry:
        policy = self._policies.get(origin)
        if policy is None:
            if len(self._policies) >= _MAX_ORIGINS:
                if self._shared is None:
                    self._shared = self._with_budget("http:other")
                return self._shared
            policy = self._policies[origin] = self._with_budget(origin)
        return policy

    def _with_budget(self, name: str) -> Retry:
        return self.retry.replace(budget=self.budget(), name=name)

    def retryable(self, request: httpx.Request) -> bool:
        if request.method not in self.methods and "idempotency-key" not in request.headers:
            return False
        # A streamed body can be sent only once.
        return isinstance(request.stream, httpx.ByteStream)

    def timeouts(self, request: httpx.Request, remaining: float | None) -> None:
        """Set the request's httpx timeouts for one attempt with ``remaining`` seconds left."""
        current = request.extensions.get("timeout")
        if current is None or current == _HTTPX_DEFAULT_TIMEOUT:
            current = self.timeout.as_dict()
        if remaining is not None:
            left = max(remaining, 0.001)
            current = {k: left if v is None else min(v, left) for k, v in current.items()}
        request.extensions = {**request.extensions, "timeout": current}


class _Breakers:
    """What both transports show operators: their per-origin breakers."""

    _r: _Resilience

    @property
    def breakers(self) -> BreakerRegistry:
        """The per-origin breakers (named ``http:{scheme}://{host}:{port}``)."""
        return self._r.breakers

    def breaker_for(self, url: httpx.URL | str) -> CircuitBreaker:
        """The breaker of ``url``'s origin (made with this transport's settings if new)."""
        r = self._r
        return r.breaker(r.origin(httpx.URL(url)))


class ResilientTransport(_Breakers, httpx.BaseTransport):
    """A sync httpx transport with a breaker per origin, retries, a budget and timeouts.

    Args:
        transport: the transport that sends requests (default ``httpx.HTTPTransport()``).
        retry: the retry policy (default: `default_retry` with ``total_timeout`` as its
            deadline: RETRY_ERRORS and RETRY_STATUSES, 4 calls, 1 s -> 2 s -> 4 s full
            jitter, ``Retry-After`` honoured); each origin gets a copy of it with a budget
            of its own.
        breakers: where the per-origin breakers live (default: a registry of this
            transport's own); pass a shared one to share breakers between clients.
        breaker_settings: `CircuitBreaker` settings for the breakers made here (default:
            the seed's 50% / 30 s / 3 trials, failing on transport errors and 5xx).
        timeout: the timeouts used when the client is left at httpx's default.
        total_timeout: seconds one request may take, retries and waits included (None:
            unbounded).
        budget: makes each origin's `RetryBudget` (default ``RetryBudget()``: retries add
            at most 20% to the first tries, plus 10 per second; None from it: no budget).
        idempotent_methods: methods retried without an ``Idempotency-Key``.
        clock: time source of the breakers, budgets and retry waits.
        listeners: receive the breakers' and the retry policies' events.

    Raises:
        ConfigurationError: a setting is out of range or of the wrong kind.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        retry: Retry | None = None,
        breakers: BreakerRegistry | None = None,
        breaker_settings: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout = SEED_TIMEOUT,
        total_timeout: float | None = SEED_TOTAL_TIMEOUT,
        budget: Callable[[], RetryBudget | None] | None = None,
        idempotent_methods: Iterable[str] = IDEMPOTENT_METHODS,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigurationError(f"transport must be an httpx.BaseTransport, got {transport!r}")
        self._inner = transport if transport is not None else httpx.HTTPTransport()
        self._r = _Resilience(
            retry=retry, breakers=breakers, breaker_settings=breaker_settings, timeout=timeout,
            total_timeout=total_timeout,
            budget=budget if budget is not None else lambda: RetryBudget(clock=clock),
            idempotent_methods=idempotent_methods, clock=clock, listeners=listeners,
        )  # fmt: skip

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the breaker, with retries when it is idempotent."""
        r = self._r
        origin = r.origin(request.url)
        breaker = r.breaker(origin)
        if not r.retryable(request):
            deadline = r.total_timeout
            r.timeouts(request, deadline)
            return self._once(breaker, request)
        previous: httpx.Response | None = None
        response: httpx.Response | None = None
        for attempt in r.policy(origin):
            with attempt:
                if previous is not None:
                    previous.close()  # a retried answer: free its connection
                r.timeouts(request, attempt.remaining)
                response = previous = self._once(breaker, request)
                attempt.result = response
        assert response is not None  # the loop ran at least once without raising
        return response

    def _once(self, breaker: CircuitBreaker, request: httpx.Request) -> httpx.Response:
        permit = breaker.acquire()  # raises CircuitOpen while open
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except BaseException as error:
            breaker.on_error(permit, error, time.perf_counter() - started)
            raise
        breaker.on_result(permit, response, time.perf_counter() - started)
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class AsyncResilientTransport(_Breakers, httpx.AsyncBaseTransport):
    """The async twin of `ResilientTransport` (same arguments, async inner transport).

    An attempt that outlives the time left of ``total_timeout`` is cancelled and raises
    `httpx.TimeoutException`.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        retry: Retry | None = None,
        breakers: BreakerRegistry | None = None,
        breaker_settings: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout = SEED_TIMEOUT,
        total_timeout: float | None = SEED_TOTAL_TIMEOUT,
        budget: Callable[[], RetryBudget | None] | None = None,
        idempotent_methods: Iterable[str] = IDEMPOTENT_METHODS,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError(
                f"transport must be an httpx.AsyncBaseTransport, got {transport!r}"
            )
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._r = _Resilience(
            retry=retry, breakers=breakers, breaker_settings=breaker_settings, timeout=timeout,
            total_timeout=total_timeout,
            budget=budget if budget is not None else lambda: RetryBudget(clock=clock),
            idempotent_methods=idempotent_methods, clock=clock, listeners=listeners,
        )  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the breaker, with retries when it is idempotent."""
        r = self._r
        origin = r.origin(request.url)
        breaker = r.breaker(origin)
        if not r.retryable(request):
            r.timeouts(request, r.total_timeout)
            return await self._once(breaker, request, r.total_timeout)
        previous: httpx.Response | None = None
        response: httpx.Response | None = None
        async for attempt in r.policy(origin):
            with attempt:
                if previous is not None:
                    await previous.aclose()  # a retried answer: free its connection
                remaining = attempt.remaining
                r.timeouts(request, remaining)
                response = previous = await self._once(breaker, request, remaining)
                attempt.result = response
        assert response is not None  # the loop ran at least once without raising
        return response

    async def _once(
        self, breaker: CircuitBreaker, request: httpx.Request, remaining: float | None
    ) -> httpx.Response:
        # aacquire: a breaker sharing its state in Redis awaits a trial permit instead of
        # blocking the loop. Raises CircuitOpen while open.
        permit = await breaker.aacquire()
        started = time.perf_counter()
        try:
            if remaining is None:
                response = await self._inner.handle_async_request(request)
            else:
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        response = await self._inner.handle_async_request(request)
                except TimeoutError as error:
                    raise httpx.TimeoutException(
                        "the request's total timeout ran out", request=request
                    ) from error
        except BaseException as error:
            breaker.on_error(permit, error, time.perf_counter() - started)
            raise
        breaker.on_result(permit, response, time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
