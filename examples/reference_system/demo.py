"""``sysdesign-kit demo``: drive the reference system with scripted traffic, or serve it.

In-process (the default) the app runs inside this process behind ``httpx.ASGITransport``:
no sockets, no servers. Each simulated client gets its own transport so the app sees its
own address. The limiter runs on a `ManualClock` that only the script moves (with Redis
too, instead of Redis TIME: there is one process), so every count in the report is exact
and a 1-minute window does not take a minute. With ``--serve`` the same app runs under
uvicorn on the real clock (Redis TIME with ``--redis``) until SIGINT or SIGTERM.
``--redis URL`` keeps limiter state in Redis in both modes.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import uuid
from collections.abc import Iterable, Sequence
from itertools import chain, zip_longest
from types import FrameType
from typing import Any

import httpx
from starlette.applications import Starlette

from reference_system.app import create_app
from reference_system.demo_keys import JWKS_PATH, TIERS, DemoKeys
from reference_system.gateway_demo import format_gateway, run_gateway_scenario
from reference_system.payments import PAYMENT_BACKOFF
from reference_system.payments_report import PaymentLog, PaymentStep, format_payments
from reference_system.product_db import ProductDB
from reference_system.products_report import ProductStep, StepMeter, format_products
from reference_system.report import Tally, format_report
from reference_system.timings import RequestLog, format_timings
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock, ManualClock, VirtualClock
from sysdesign_kit.events import BackendFailure, Event
from sysdesign_kit.health import Check
from sysdesign_kit.ratelimit.backend import LimiterBackend, backend_from_url
from sysdesign_kit.ratelimit.memory import MemoryBackend

__all__ = ["run", "run_payment_scenario", "run_product_scenario", "run_scenarios"]

Request = tuple[str, str | None]  # (path, API key or None)

_PRODUCT = "/api/v1/products/"
_PRODUCT_ROUTE = "/api/v1/products/{product_id}"


def _products(count: int, key: str | None = None) -> list[Request]:
    """``count`` product requests cycling over ids 1..5."""
    return [(f"{_PRODUCT}{i % 5 + 1}", key) for i in range(count)]


def _interleave(*streams: Sequence[Request]) -> list[Request]:
    """Requests of several users arriving turn by turn, as they would through one NAT."""
    return [r for r in chain.from_iterable(zip_longest(*streams)) if r is not None]


class _Traffic:
    """Sends requests to the app in-process, one client (address) per simulated caller."""

    def __init__(self, app: Starlette) -> None:
        self._app = app
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.first_429: httpx.Response | None = None

    def _client(self, ip: str) -> httpx.AsyncClient:
        client = self._clients.get(ip)
        if client is None:
            transport = httpx.ASGITransport(app=self._app, client=(ip, 40_000))
            client = httpx.AsyncClient(transport=transport, base_url="http://reference.test")
            self._clients[ip] = client
        return client

    async def send(self, title: str, ip: str, requests: Iterable[Request]) -> Tally:
        """Send ``requests`` in order from ``ip`` and count the answers."""
        tally = Tally(title, ip)
        client = self._client(ip)
        for path, key in requests:
            headers = {"X-API-Key": key} if key else None
            response = await client.get(path, headers=headers)
            tally.record(response)
            if response.status_code == 429 and self.first_429 is None:
                self.first_429 = response
        return tally

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()


async def _wait(clock: Clock, seconds: float) -> None:
    if isinstance(clock, ManualClock):
        clock.advance(seconds)
    else:
        await clock.sleep(seconds)


async def run_scenarios(
    app: Starlette, *, clock: Clock
) -> tuple[list[Tally], httpx.Response | None]:
    """Send the demo's scripted traffic to ``app``; one `Tally` per scenario.

    Args:
        app: the reference system (from `create_app`).
        clock: the limiter's clock; a `ManualClock` is advanced where the script waits,
            any other clock is slept on.

    Returns:
        The tallies and the first 429 response seen (to show its headers and body).
    """
    traffic = _Traffic(app)
    try:
        tallies = [
            await traffic.send(
                "/health x30 (exempt from limits)", "198.51.100.20", [("/health", None)] * 30
            ),
            await traffic.send("anonymous client bursts 25", "198.51.100.7", _products(25)),
        ]
        wait = max(tallies[-1].retry_after, default=3)
        await _wait(clock, wait)
        tallies.append(
            await traffic.send(
                f"it waits Retry-After ({wait} s), tries 1", "198.51.100.7", _products(1)
            )
        )
        tallies.append(
            await traffic.send(
                "free user sends 105", "198.51.100.8", _products(105, "demo-free-key")
            )
        )
        office = _interleave(
            _products(250, "demo-premium-key"),
            _products(250, "demo-premium-key-2"),
            _products(50, "demo-free-key-2"),
            _products(50, "demo-free-key-3"),
        )
        tallies.append(
            await traffic.send("2 premium + 2 free users, one IP: 600", "203.0.113.7", office)
        )
        tallies.append(
            await traffic.send(
                "premium-user-1 from another IP: 20",
                "192.0.2.44",
                _products(20, "demo-premium-key"),
            )
        )
        mistakes: list[Request] = [
            (f"{_PRODUCT}1", "not-a-demo-key"),
            (f"{_PRODUCT}999", None),
            (f"{_PRODUCT}abc", None),
        ]
        tallies.append(
            await traffic.send("wrong API key, unknown id, id 'abc'", "198.51.100.9", mistakes)
        )
        return tallies, traffic.first_429
    finally:
        await traffic.close()


async def run_payment_scenario(app: Starlette, *, clock: Clock) -> list[PaymentStep]:
    """Pay orders while the payment service works, fails for a minute, and recovers.

    The breaker opens during the outage, payments fall back to being queued without a call,
    its trials fail while the outage lasts and succeed after it, and it closes again.

    Args:
        app: the reference system (from `create_app`).
        clock: the payment client's clock; a `ManualClock` is advanced where the script
            waits, any other clock is slept on.
    """
    payments = app.state.payments
    service = payments.service
    transport = httpx.ASGITransport(app=app, client=("198.51.100.30", 40_000))
    headers = {"X-API-Key": "demo-premium-key-3"}
    steps: list[PaymentStep] = []
    order = iter(range(1001, 10_000))

    async def pay(title: str, count: int) -> None:
        step = PaymentStep(title)
        before = service.charges
        for _ in range(count):
            charge = {"order_id": next(order), "amount": 42.5}
            answer = await client.post("/api/v1/payments", json=charge, headers=headers)
            step.statuses[answer.status_code] += 1
        step.reached_service = service.charges - before
        steps.append(step)

    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as client:
        await pay("payment service up: 3 payments", 3)
        service.fail_for(75.0)  # 503s, no Retry-After: the client's own backoff decides
        await pay("service down (503) for 75 s: 4 payments", 4)
        await _wait(clock, 30.0)
        await pay("30 s later, still down: 2 payments (1st is a trial)", 2)
        await _wait(clock, 50.0)
        await pay("50 s later, service back: 5 payments (3 trials first)", 5)
    return steps


#: The simulated product database's query time in the demo: slow enough for a cache to matter.
PRODUCT_DB_LATENCY = 0.05


async def run_product_scenario(app: Starlette, *, clock: Clock) -> list[ProductStep]:
    """Read products through the cache: steady traffic, a stampede, and a database outage.

    The cache starts empty and database queries take `PRODUCT_DB_LATENCY`. Steady traffic
    over the catalog (popular products read most) is answered mostly from the cache; 200
    simultaneous reads of a cold product make one database query; two hours later, with
    the database down, the expired products are still answered (stale-if-error) while a
    product never cached is not; when the database is back, reads make it fresh again.

    Args:
        app: the reference system (from `create_app`).
        clock: the app's clock; a `ManualClock` is advanced where the script waits, any
            other clock is slept on.
    """
    service = app.state.products
    db: ProductDB = service.db
    db.latency = PRODUCT_DB_LATENCY
    await service.cache.invalidate_all()
    transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40_000))
    headers = {"X-API-Key": "demo-premium-key-2"}
    steps: list[ProductStep] = []
    # Seeded: the same products are read on every run, so every count is the same.
    rng = random.Random(2026)
    ids = range(1, 101)
    popularity = [1 / rank for rank in ids]  # Zipf: the n-th most popular is read 1/n as often

    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as client:

        async def read(meter: StepMeter, product_ids: Iterable[int], every: float = 0.0) -> None:
            for product_id in product_ids:
                answer = await client.get(f"{_PRODUCT}{product_id}", headers=headers)
                meter.step.statuses[answer.status_code] += 1
                if every:
                    await _wait(clock, every)
            steps.append(meter.done())

        meter = StepMeter(service, "steady traffic: 2000 reads of 100 products in 20 min")
        await read(meter, rng.choices(ids, weights=popularity, k=2000), every=0.6)

        meter = StepMeter(service, "stampede: 200 reads of cold product 123 at once")
        answers = await asyncio.gather(
            *(client.get(f"{_PRODUCT}123", headers=headers) for _ in range(200))
        )
        meter.step.statuses.update(answer.status_code for answer in answers)
        steps.append(meter.done())

        await _wait(clock, 7200.0)
        db.down = True
        await read(
            StepMeter(service, "2 h later (expired), DB down: 100 reads of 10 products"),
            [i % 10 + 1 for i in range(100)],
        )
        await read(StepMeter(service, "DB down: 5 reads of product 500, never cached"), [500] * 5)
        db.down = False
        await read(
            StepMeter(service, "DB back: 100 reads of the same 10 products"),
            [i % 10 + 1 for i in range(100)],
        )
    return steps


def _explain_429(response: httpx.Response) -> list[str]:
    shown = (
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
        "content-type",
        "x-request-id",
        "server-timing",
    )
    lines = ["", "the first 429 looked like this:", "  HTTP/1.1 429 Too Many Requests"]
    lines += [f"  {name}: {response.headers[name]}" for name in shown if name in response.headers]
    lines.append(f"  {response.text}")
    return lines


def _make_backend(redis_url: str | None, prefix: str, clock: Clock) -> LimiterBackend:
    """Memory, or Redis under ``prefix``; on a `ManualClock` Redis decides on that clock."""
    if redis_url is None:
        return MemoryBackend(clock=clock)
    if isinstance(clock, ManualClock):
        # One process, one clock: the scripted run may replace Redis TIME by its own clock
        # so that its counts are as exact on Redis as in memory.
        return backend_from_url(redis_url, prefix=prefix, clock=clock, server_time=False)
    return backend_from_url(redis_url, prefix=prefix)


def _where(backend: LimiterBackend) -> str:
    """Where the state lives, for people: the Redis location without credentials."""
    settings = getattr(backend, "settings", None)
    return (
        f"Redis {getattr(settings, 'location', '')}".strip()
        if backend.kind == "redis"
        else "memory"
    )


async def _reachable(app: Starlette) -> bool:
    """Ask the backend once; False if the failure policy had to answer."""
    return not (await app.state.limits.limiters[0].peek("demo:preflight")).degraded


async def _close(backend: LimiterBackend) -> None:
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()


async def _in_process(redis_url: str | None, redis_prefix: str, jwt_keys: DemoKeys | None) -> int:
    failures: list[Event] = []

    def on_event(event: Event) -> None:
        if isinstance(event, BackendFailure):
            failures.append(event)

    requests = RequestLog()
    # Simulated time: it moves only when the script waits or a retry backs off, so every
    # count is exact and a 30 s breaker needs no 30 s. A fresh key prefix per run: a
    # second run within the minute starts from full quotas.
    clock = VirtualClock()
    payment_log = PaymentLog(clock, PAYMENT_BACKOFF)
    backend = _make_backend(redis_url, f"{redis_prefix}:run-{uuid.uuid4().hex[:8]}", clock)
    try:
        app = create_app(
            backend=backend,
            clock=clock,
            listeners=[on_event, requests, payment_log],
            checks=_checks(redis_url),
            # Seeded: the report's jittered waits are the same on every run.
            payments_rng=random.Random(2026),
            jwt_keys=jwt_keys,
        )
        if not await _reachable(app):
            print(f"error: cannot reach {_where(backend)}: {failures[0]}", file=sys.stderr)
            return 1
        # httpx.ASGITransport sends no lifespan events: run the health checks here.
        async with app.state.health:
            tallies, first_429 = await run_scenarios(app, clock=clock)
            finished = list(requests.finished)
            payment_log.mark()
            payment_steps = await run_payment_scenario(app, clock=clock)
            product_steps = await run_product_scenario(app, clock=clock)
            gateway = await run_gateway_scenario(
                app, clock=clock, keys=app.state.jwt_keys, other_key=DemoKeys.generate()
            )
        await app.state.payments.aclose()
    finally:
        await _close(backend)
    header = [
        "sysdesign-kit demo: the reference system, in-process (httpx.ASGITransport, no sockets)",
        f"limiter: token bucket, state in {_where(backend)}, simulated clock",
        "limits: " + ", ".join(f"{lim.name} {lim.rate}" for lim in app.state.limits.limiters),
    ]
    print(format_report(header, tallies))
    if first_429 is not None:
        print("\n".join(_explain_429(first_429)))
    print("\n" + "\n".join(format_timings(finished, route=_PRODUCT_ROUTE)))
    breaker = app.state.payments.breaker
    print("\n".join(format_payments(payment_steps, payment_log, _describe(breaker))))
    print("\n".join(format_products(product_steps, app.state.products)))
    print("\n".join(format_gateway(*gateway)))
    print(
        "\n'allowed' counts every answer but 429 (the limiter let it through)."
        "\nServe it yourself: sysdesign-kit demo --serve --port 8000"
        "\n(from a checkout: bash scripts/demo.sh --serve --port 8000)"
    )
    if failures:
        print(
            f"\nWARNING: the limiter backend failed {len(failures)} times ({failures[0]}); "
            "those requests were decided by the failure policy, not by the limits.",
            file=sys.stderr,
        )
        return 1
    return 0


def _describe(breaker: Any) -> str:
    policy = breaker.policy
    return (
        f"{breaker.name!r}: opens at {policy.failure_rate:.0%} failures over the "
        f"{breaker.window} (at least {policy.minimum_calls}), open {policy.open_for:g} s, "
        f"{policy.half_open_calls} trial calls; now {breaker.state.value}"
    )


def _checks(redis_url: str | None) -> list[Check]:
    """The health checks beyond the built-in ones: Redis, when the state lives there."""
    if redis_url is None:
        return []
    from sysdesign_kit.health.redis_check import RedisCheck

    return [RedisCheck(redis_url)]


def _sample_tokens(keys: DemoKeys, jwt_key: str | None) -> str:
    """A token per tier for the banner, and how to mint more that this server accepts."""
    lines = [f"  JWKS: {JWKS_PATH} (kid {keys.kid}); sample tokens (RS256, 1 h):"]
    for tier in TIERS:
        token = keys.mint(tier=tier, scope="read write", sub=f"demo-{tier}-user")
        lines.append(f"    {tier} (scope 'read write'): {token}")
    admin = keys.mint(tier="premium", roles=["admin"], scope="read write admin", sub="demo-admin")
    lines.append(f"    premium admin (scope 'read write admin'): {admin}")
    if jwt_key is None:
        lines.append(
            "  (key generated at start: other tokens verify only if this server and "
            "`sysdesign-kit demo token` share --jwt-key PATH)"
        )
    else:
        lines.append(f"  more: sysdesign-kit demo token --tier premium --jwt-key {jwt_key}")
    return "\n".join(lines)


def _serve(
    *,
    host: str,
    port: int,
    redis_url: str | None,
    redis_prefix: str,
    jwt_keys: DemoKeys | None,
    jwt_key: str | None,
) -> int:
    import uvicorn

    backend = _make_backend(redis_url, redis_prefix, SYSTEM_CLOCK)
    app = create_app(backend=backend, checks=_checks(redis_url), jwt_keys=jwt_keys)
    # Real time here: a product read that misses the cache waits 50 ms on the database.
    app.state.products.db.latency = PRODUCT_DB_LATENCY
    base = f"http://{host}:{port}"
    print(
        f"reference system on {base} (limiter state: {_where(backend)}); Ctrl-C to stop\n"
        f"  curl -i {base}/health     (also /live, /ready; metrics at {base}/metrics)\n"
        f"  curl -i {base}{_PRODUCT}1\n"
        f"  curl -i -H 'X-API-Key: demo-premium-key' {base}{_PRODUCT}1\n"
        f"  curl -s {base}{_PRODUCT}cache     (the product cache's hits, misses, DB queries)\n"
        f"  curl -i -H 'Authorization: Bearer <token>' {base}/api/v1/users/me\n"
        + _sample_tokens(app.state.jwt_keys, jwt_key),
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the
    # handler that was there before; make that one a no-op so a requested stop exits 0.
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _ignore) for sig in stop_signals}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Swallow the stop signal uvicorn re-raises after its graceful shutdown."""


def run(
    *,
    serve: bool,
    host: str = "127.0.0.1",
    port: int = 8000,
    redis_url: str | None = None,
    redis_prefix: str = "sdk-demo",
    jwt_key: str | None = None,
) -> int:
    """Run the demo in-process and print the report, or serve the app with ``serve=True``.

    Args:
        serve: serve over HTTP with uvicorn until SIGINT/SIGTERM instead of the scripted run.
        host: interface to bind when serving.
        port: TCP port to bind when serving.
        redis_url: keep limiter state in this Redis instead of in memory.
        redis_prefix: Redis key prefix; served instances with the same prefix share their
            limits, the scripted run adds a suffix of its own so every run starts afresh.
        jwt_key: a PEM file holding the RSA private key that signs the demo's tokens
            (default: a key generated at start).

    Returns:
        The process exit code: 0 when the demo ran (or the server stopped) as asked.

    Raises:
        ConfigurationError: ``jwt_key`` holds no usable RSA private key (or a bad Redis URL).
    """
    keys = None if jwt_key is None else DemoKeys.from_pem(jwt_key)
    if serve:
        return _serve(
            host=host,
            port=port,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            jwt_keys=keys,
            jwt_key=jwt_key,
        )
    return asyncio.run(_in_process(redis_url, redis_prefix, keys))
