"""One rate-limit policy on a `RedisBackend`, and the decision scripts it runs.

A `RedisLimit` turns a caller key into its Redis key, runs one script call per decision
(the blocking path on a pooled connection, the async path through the backend's `Lane`),
and keeps the deny cache: a key denied to a request of cost 1 is answered locally, exactly
as the server would, until its retry-after.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any

from sysdesign_kit.backends.redis import REDIS_ERRORS, Script, backend_error, pack
from sysdesign_kit.errors import InvalidKey
from sysdesign_kit.ratelimit.backend import Raw
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.rate import Rate
from sysdesign_kit.ratelimit.redis_batch import parse_raws

if TYPE_CHECKING:
    from sysdesign_kit.ratelimit.limiter import RateLimiter
    from sysdesign_kit.ratelimit.redis import RedisBackend

__all__ = ["DECIDE_SCRIPT", "SINGLE_SCRIPTS", "RedisLimit"]

_LUA = resources.files("sysdesign_kit.ratelimit") / "lua"
_ALGORITHM_FILES = {"g": "gcra.lua", "s": "sliding_window.lua", "f": "fixed_window.lua"}


def _lua(name: str) -> str:
    return (_LUA / name).read_text("utf-8")


def _single(code: str) -> Script:
    head, tail = _lua("one.lua").split("--[[ step ]]\n")
    return Script(head + _lua(_ALGORITHM_FILES[code]) + tail, name=f"ratelimit-{code}")


def _decide() -> Script:
    # Each step body becomes a function: the driver calls it per key, twice for a peek.
    steps = "".join(
        f"steps.{code} = function(stored, now, p, q, cost)\n"
        "local allowed, state, remaining, reset, retry\n"
        f"{_lua(file)}"
        "return allowed, state, remaining, reset, retry\nend\n"
        for code, file in _ALGORITHM_FILES.items()
    )
    head, tail = _lua("decide.lua").split("--[[ steps ]]\n")
    return Script(head + steps + tail, name="ratelimit")


#: Batches and multi-limit checks (any mix of algorithms) and peeks run this script: the
#: three algorithms' step bodies as functions, and a driver over all keys.
DECIDE_SCRIPT = _decide()
#: One script per algorithm for single decisions, its step body inline: Redis runs a
#: script's top level on every call, so this one defines no function.
SINGLE_SCRIPTS = {code: _single(code) for code in _ALGORITHM_FILES}

_new: Any = tuple.__new__
_PEEK = b"p"


class RedisLimit:
    """One policy on a `RedisBackend`: decides for a key with one script call."""

    __slots__ = (
        "algorithm",
        "args1",
        "backend",
        "denied",
        "head",
        "name",
        "ns",
        "one1",
        "owner",
        "rate",
        "script",
        "unit",
    )

    def __init__(
        self,
        backend: RedisBackend,
        algorithm: str,
        rate: Rate,
        name: str,
        code: str,
        params: tuple[int, int],
        unit: int = 1,
    ) -> None:
        self.backend = backend
        self.algorithm = algorithm
        self.rate = rate
        self.name = name
        self.owner: RateLimiter | None = None
        self.head = backend.keys.head("rl", code, name).encode("utf-8")
        #: Microseconds per time unit of the script (1 unless the rate needs a coarser one).
        self.unit = unit
        p, q, encoded_unit = b"%d" % params[0], b"%d" % params[1], b"%d" % unit
        #: The single-decision script's arguments after ``now``, for cost 1: (p, q, 1), and
        #: the unit unless it is 1.
        self.one1 = (p, q, b"1", encoded_unit) if unit > 1 else (p, q, b"1")
        #: One decision's arguments to `DECIDE_SCRIPT` for cost 1: (code, p, q, 1, unit).
        self.args1 = (code.encode(), p, q, b"1", encoded_unit)
        self.script = SINGLE_SCRIPTS[code]
        self.ns = backend.clock.monotonic_ns
        #: key -> (monotonic ns until it is allowed again, monotonic ns of its full reset)
        self.denied: dict[str, tuple[int, int]] = {}

    def redis_key(self, key: str) -> bytes:
        """The Redis key holding ``key``'s state under this policy.

        Raises:
            InvalidKey: ``key`` is not a str or cannot be encoded as UTF-8.
        """
        try:
            return self.head + key.encode("utf-8") + b"}"
        except UnicodeEncodeError:
            raise InvalidKey("a key must be encodable as UTF-8") from None
        except AttributeError:
            raise InvalidKey(f"a key must be a str, got {type(key).__name__}") from None

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        """Check and charge ``cost`` (blocking; one script call unless the deny cache knows).

        Raises:
            InvalidKey: see `redis_key`.
            BackendUnavailable: Redis failed or timed out.
        """
        if cost == 1 and self.denied:
            local = self._recall(key)
            if local is not None:
                return local
        rkey = self.redis_key(key)
        backend = self.backend
        t0 = self.ns()
        args: tuple[bytes, ...]
        if cost == 1:
            args = (backend.now_arg(), *self.one1)
        else:
            args = (backend.now_arg(), *self.with_cost(cost)[0])
        values = self.script.run(backend.connections, (rkey,), args).split()
        raw = (values[0] == b"1", int(values[1]), int(values[2]), int(values[3]))
        if not raw[0] and cost == 1:
            self.remember(key, raw, t0)
        return _new(RateLimitDecision, (*raw, self.owner, False))  # type: ignore[no-any-return]

    async def adecide(self, key: str, cost: int) -> RateLimitDecision:
        """Check and charge ``cost``; batched with the decisions waiting at the same moment.

        Raises:
            InvalidKey: see `redis_key`.
            BackendUnavailable: Redis failed or timed out.
        """
        if cost == 1 and self.denied:
            local = self._recall(key)
            if local is not None:
                return local
        rkey = self.redis_key(key)
        lane = self.backend.last_lane
        if lane is None or lane.loop is not asyncio.get_running_loop():
            lane = self.backend.lane()
        t0 = self.ns()
        if cost == 1:
            raw = await lane.decide(self.script, rkey, self.one1, self.args1)
        else:
            raw = await lane.decide(self.script, rkey, *self.with_cost(cost))
        if not raw[0] and cost == 1:
            self.remember(key, raw, t0)
        return _new(RateLimitDecision, (*raw, self.owner, False))  # type: ignore[no-any-return]

    def with_cost(self, cost: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """`one1` and `args1` for ``cost`` instead of 1."""
        encoded = b"%d" % cost
        one, many = self.one1, self.args1
        return (*one[:2], encoded, *one[3:]), (*many[:3], encoded, many[4])

    def _recall(self, key: str) -> RateLimitDecision | None:
        """The cached denial of ``key`` if it still holds, else None.

        Only requests of cost 1 are answered here: for them the cached answer is exactly the
        server's (a denied key is charged by nobody, and its retry time is when cost 1 would
        pass). A bigger cost needs longer, which only the server can tell exactly.
        """
        entry = self.denied.get(key)
        if entry is None:
            return None
        now = self.ns()
        until, reset = entry
        if now >= until:
            self.denied.pop(key, None)
            return None
        return _new(  # type: ignore[no-any-return]
            RateLimitDecision,
            (False, 0, -((now - reset) // 1000), -((now - until) // 1000), self.owner, False),
        )

    def remember(self, key: str, raw: Raw, t0: int) -> None:
        """Cache a denial of cost 1 (which denies every cost) until its retry-after.

        Times count from ``t0``, read before the request left, so the local deadline never
        falls after the server's.
        """
        limit = self.backend.deny_cache
        if not limit:
            return
        denied = self.denied
        if len(denied) >= limit:
            now = self.ns()
            for stale in [k for k, (until, _) in list(denied.items()) if until <= now]:
                denied.pop(stale, None)
            if len(denied) >= limit:
                denied.clear()
        denied[key] = (t0 + raw[3] * 1000, t0 + raw[2] * 1000)

    def peek(self, key: str) -> Raw:
        """Whether cost 1 would pass and its retry, with remaining and reset as they stand
        (blocking; nothing stored)."""
        backend = self.backend
        reply = DECIDE_SCRIPT.run(
            backend.connections, (self.redis_key(key),), (_PEEK, backend.now_arg(), *self.args1)
        )
        return parse_raws(reply)[0]

    async def apeek(self, key: str) -> Raw:
        """Async `peek`."""
        backend = self.backend
        args = (_PEEK, backend.now_arg(), *self.args1)
        reply = await backend.lane().run((self.redis_key(key),), args, DECIDE_SCRIPT)
        return parse_raws(reply)[0]

    def reset(self, key: str) -> None:
        """Delete the key's state here and in this process's deny cache (blocking)."""
        rkey = self.redis_key(key)
        self.denied.pop(key, None)
        try:
            self.backend.connections.call(pack(b"DEL", rkey))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "DEL", self.backend.settings.location) from exc

    async def areset(self, key: str) -> None:
        """Async `reset`."""
        rkey = self.redis_key(key)
        self.denied.pop(key, None)
        try:
            await self.backend.lane().wire.call(pack(b"DEL", rkey))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "DEL", self.backend.settings.location) from exc
