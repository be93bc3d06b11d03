"""Rate-limit state in Redis: shared by every process, one script call per decision.

A single decision runs one short script per algorithm (``lua/one.lua`` around the
algorithm's step: the Lua twins of ``algorithms.py``); batches, checks of several limits and
peeks run ``lua/decide.lua`` over all three. Either runs atomically on the server and reads
Redis ``TIME``, so client clocks do not matter. Keys look like
``{prefix}:rl:{g|s|f}:{policy}:{{key}}`` and expire when their quota is fully back.

Requires Redis >= 5: the scripts write after reading ``TIME``, which Redis allows once it
replicates a script's effects rather than the script (the default since 5.0).

Resolution: the scripts compute with IEEE doubles, exact below 2**53. A sliding window whose
``period_us * limit`` would reach 2**52 (from about "100000/day") counts time in a coarser
unit: the smallest power of ten of microseconds that divides the period and keeps it exact
(10 us for "100000/day", 100 us for "1000000/day"). Answers stay exact at that resolution:
a decision is the one due at the start of the current unit (the previous window weighs a
little more then, so it is never more lenient), and reset and retry-after are rounded up to
where a unit starts, so a client is never told to retry early. The memory backend always
counts whole microseconds, so for such rates the two backends' answers can differ by less
than one unit of time. Token buckets and fixed windows always count microseconds; only a
token bucket that takes over 71 years to refill is refused.

Three things keep it fast without changing the API:

- the async path batches decisions that wait at the same moment into one script call
  (see `redis_batch.Lane`); one caller alone pays exactly one round trip;
- a key denied to a request of cost 1 is remembered until its retry-after, on the local
  monotonic clock; asked again (cost 1) within that time it is denied without a round trip,
  with the answer the server would give (``deny_cache``; ``reset`` on this backend forgets
  it, a reset made by another process is seen once the entry expires);
- arguments are pre-encoded at ``bind`` time and a reply is one short status line (cheaper
  to read than an array for redis-py's Python parser).

Every driver failure surfaces as `BackendUnavailable`; the limiter applies its failure
policy (fail open or closed).

Batches and multi-limit checks send several keys in one script call. That is fine on a
standalone server (the only kind these URLs reach); on a Cluster the keys of one call must
share a slot, which a ``prefix`` holding a ``{tag}`` guarantees (see `KeySpace`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio

from sysdesign_kit.backends.redis import (
    Connections,
    KeySpace,
    RedisSettings,
    async_connection_factory,
    parse_redis_url,
    sync_client,
)
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.ratelimit.backend import BoundLimit, Raw
from sysdesign_kit.ratelimit.rate import Rate
from sysdesign_kit.ratelimit.redis_batch import Lane, parse_raws
from sysdesign_kit.ratelimit.redis_limit import DECIDE_SCRIPT, SINGLE_SCRIPTS, RedisLimit
from sysdesign_kit.ratelimit.redis_wire import Wire

__all__ = ["DECIDE_SCRIPT", "SINGLE_SCRIPTS", "RedisBackend"]

_CODES = {"gcra": "g", "sliding_window": "s", "fixed_window": "f"}
_BACKEND_OPTIONS = frozenset(
    {"prefix", "clock", "deny_cache", "max_inflight", "max_batch", "server_time"}
)
_ALL, _SERVER_TIME = b"a", b""


class RedisBackend:
    """Rate-limit state in Redis, for limiters shared across processes and machines.

    Args:
        settings: where to connect (see `parse_redis_url`); default ``localhost:6379/0``.
        client: a ready blocking client for the sync API instead of one made from
            ``settings`` (it is not closed by `close`).
        async_client: an asyncio client whose connection options (address, TLS, auth) the
            async API copies into connections of its own; ``settings`` still give the
            timeouts.
        prefix: key namespace (see `KeySpace`).
        clock: the local monotonic clock for the deny cache.
        deny_cache: most denied keys remembered per policy (0: ask Redis every time).
        max_inflight: async script calls on the wire at once before callers batch.
        max_batch: most decisions sent in one script call.
        server_time: ``False`` decides on ``clock`` instead of Redis TIME. For tests only:
            processes would each bring their own time.

    Needs Redis >= 5. Very large sliding windows count time in units coarser than a
    microsecond (see the module's notes on resolution).
    """

    kind = "redis"
    local = False

    def __init__(
        self,
        settings: RedisSettings | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "sdk",
        clock: Clock = SYSTEM_CLOCK,
        deny_cache: int = 10_000,
        max_inflight: int = 2,
        max_batch: int = 256,
        server_time: bool = True,
    ) -> None:
        for name, value, low in (
            ("deny_cache", deny_cache, 0),
            ("max_inflight", max_inflight, 1),
            ("max_batch", max_batch, 1),
        ):
            if type(value) is not int or value < low:
                raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")
        self.settings = settings or RedisSettings()
        self.keys = KeySpace(prefix)
        self.clock = clock
        self.deny_cache = deny_cache
        self._owns_client = client is None
        self.client: redis.Redis = client if client is not None else sync_client(self.settings)
        #: The blocking API's connections (made by ``client``'s pool).
        self.connections = Connections(self.client)
        self._make_connection = async_connection_factory(async_client or self.settings)
        self.last_lane: Lane | None = None
        self._lanes: dict[asyncio.AbstractEventLoop, Lane] = {}
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        #: The scripts' ``now`` argument: empty for Redis TIME, else the clock's microseconds.
        self.now_arg: Callable[[], bytes] = _server_now if server_time else self._clock_now

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://`` or ``unix://`` URLs.

        ``options`` are this class's keyword arguments plus connection overrides such as
        ``socket_timeout=0.1`` (see `parse_redis_url`).

        Raises:
            ConfigurationError: a malformed URL or an unknown or invalid option.
        """
        own = {name: options.pop(name) for name in list(options) if name in _BACKEND_OPTIONS}
        return cls(parse_redis_url(url, **options), **own)

    def __repr__(self) -> str:
        return f"RedisBackend({self.settings.location!r}, prefix={self.keys.prefix!r})"

    def _clock_now(self) -> bytes:
        return b"%d" % (self.clock.monotonic_ns() // 1000)

    def bind(self, algorithm: str, rate: Rate, name: str) -> BoundLimit:
        """A decider for one policy; its keys are shared by every process using ``name``.

        A rate too large for exact arithmetic in microseconds runs on a coarser time unit
        (see `RedisBackend`).

        Raises:
            ConfigurationError: unknown algorithm, or a rate that no time unit makes exact.
        """
        code = _CODES.get(algorithm)
        if code is None:
            raise ConfigurationError(f"algorithm {algorithm!r} is not one of {sorted(_CODES)}")
        p, q, unit = _in_units(code, rate)
        return RedisLimit(self, algorithm, rate, name, code, (p, q), unit)

    def lane(self) -> Lane:
        """The batching lane (and connection) of the running event loop.

        An asyncio connection belongs to the loop that opened it, so each loop gets its own;
        the last one used is kept at hand for the hot path.
        """
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            for gone in [old for old in list(self._lanes) if old.is_closed()]:
                del self._lanes[gone]
            wire = Wire(
                self._make_connection,
                timeout=self.settings.socket_timeout,
                connect_timeout=self.settings.socket_connect_timeout,
                location=self.settings.location,
            )
            lane = Lane(
                wire,
                DECIDE_SCRIPT,
                self.now_arg,
                max_inflight=self._max_inflight,
                max_batch=self._max_batch,
            )
            self._lanes[loop] = lane
        self.last_lane = lane
        return lane

    def decide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Check every (policy, key); charge all only if all allow. One script call."""
        keys, args = self._many(items, cost)
        t0 = self.clock.monotonic_ns()
        raws = parse_raws(DECIDE_SCRIPT.run(self.connections, keys, args))
        self._remember_many(items, raws, cost, t0)
        return raws

    async def adecide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Check every (policy, key); charge all only if all allow. One script call."""
        keys, args = self._many(items, cost)
        t0 = self.clock.monotonic_ns()
        raws = parse_raws(await self.lane().run(keys, tuple(args)))
        self._remember_many(items, raws, cost, t0)
        return raws

    def _many(
        self, items: Sequence[tuple[BoundLimit, str]], cost: int
    ) -> tuple[list[bytes], list[bytes]]:
        keys: list[bytes] = []
        args: list[bytes] = [_ALL, self.now_arg()]
        for bound, key in items:
            if not isinstance(bound, RedisLimit) or bound.backend is not self:
                raise ConfigurationError("all limits checked together must share one backend")
            keys.append(bound.redis_key(key))
            args.extend(bound.args1 if cost == 1 else bound.with_cost(cost)[1])
        return keys, args

    def _remember_many(
        self, items: Sequence[tuple[BoundLimit, str]], raws: list[Raw], cost: int, t0: int
    ) -> None:
        if cost == 1 and self.deny_cache:
            for (bound, key), raw in zip(items, raws, strict=True):
                if not raw[0]:
                    bound.remember(key, raw, t0)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close the blocking client (if this backend made it; else give its connections
        back)."""
        self.connections.close()
        if self._owns_client:
            self.client.close()

    async def aclose(self) -> None:
        """Finish batches in flight and close the clients this backend made."""
        lane = self._lanes.pop(asyncio.get_running_loop(), None)
        if lane is not None:
            if self.last_lane is lane:
                self.last_lane = None
            await lane.aclose()
        self.close()


def _server_now() -> bytes:
    return _SERVER_TIME


def _in_units(code: str, rate: Rate) -> tuple[int, int, int]:
    """The script's parameters ``(p, q)`` in whole time units, and the unit in microseconds.

    Lua numbers are doubles, so the largest product a script forms, ``p * q``, must stay
    below a bound that keeps every value, ``now`` and counts added, below 2**53. The fixed
    window forms none. A sliding window whose ``period * limit`` reaches 2**52 runs on a
    coarser unit: the smallest power of ten that divides the period and brings the product
    under the bound (its replies, at most two periods, stay exact in microseconds). A token
    bucket is not scaled: its reset, in microseconds, is up to ``interval * burst`` itself.

    Raises:
        ConfigurationError: no such unit, or a token bucket deeper than 2**51 us.
    """
    if code == "f":
        return rate.period_us, rate.limit, 1
    if code == "g":
        p, q = rate.interval_us, rate.burst
        if p * q >= 2**51:
            raise ConfigurationError(
                f"rate {rate} is too large for exact arithmetic in Redis Lua (IEEE doubles): "
                f"a token bucket of {q} tokens, one every {p} us, takes {p * q} us (over 71 "
                "years) to refill, and must take less than 2**51 us. Use a lower burst."
            )
        return p, q, 1
    p, q = rate.period_us, rate.limit
    unit = 1
    while p // unit * q >= 2**52:
        unit *= 10
        if p % unit:
            needed = unit
            while p * q >= 2**52 * needed:
                needed *= 10
            hint = " (any whole number of seconds is)" if needed <= 1_000_000 else ""
            raise ConfigurationError(
                f"rate {rate} is too large for exact arithmetic in Redis Lua (IEEE doubles): "
                f"a sliding window of {p} us times a limit of {q} needs time units of at "
                f"least {needed} us, which do not divide the period. Use a period that is a "
                f"whole multiple of {needed} us{hint}, or a lower limit."
            )
    return p // unit, q, unit
