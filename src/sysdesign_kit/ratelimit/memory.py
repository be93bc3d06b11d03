"""In-memory rate-limit state: the embedded default.

Memory stays bounded without a sweeper that scans keys: every policy keeps its keys in
generations of plain dicts and drops a whole generation once everything in it has fully
recovered (see `_GcraTable` and `_WindowTable`). Cost per decision: one or two dict lookups
and one store; no per-key timers, heaps or tuples.

Each table has ``evaluate`` (decide without storing: peeks and all-or-nothing checks) and,
for the single-key paths every request takes, ``decide`` and ``acquire``: the same few
lines unrolled on purpose, because a Python call and a result tuple are a fifth of a
decision's cost here. The algorithm itself is only in `algorithms`; these lines only load,
call it and store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.ratelimit.algorithms import fixed_window, gcra, sliding_window
from sysdesign_kit.ratelimit.backend import BoundLimit, Raw
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.rate import Rate

if TYPE_CHECKING:
    from sysdesign_kit.ratelimit.limiter import RateLimiter

__all__ = ["MemoryBackend"]

# tuple.__new__ builds the decision without NamedTuple's Python-level __new__ frame.
_new: Any = tuple.__new__


class _Table:
    """State for one policy; subclasses keep it in one or two generations of dicts."""

    __slots__ = ("_ns", "name", "owner", "rate")

    algorithm: str

    def __init__(self, rate: Rate, name: str, ns: Callable[[], int]) -> None:
        self.rate = rate
        self.name = name
        self.owner: RateLimiter | None = None
        self._ns = ns

    def evaluate(self, key: str, cost: int, now: int) -> tuple[Raw, int]:
        """Decide without storing: the answer and the state to `commit` if charged."""
        raise NotImplementedError

    def commit(self, key: str, state: int) -> None:
        """Store a state returned by `evaluate`."""
        raise NotImplementedError

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        raw, state = self.evaluate(key, cost, self._ns() // 1000)
        if raw[0]:
            self.commit(key, state)
        return _new(RateLimitDecision, (*raw, self.owner, False))  # type: ignore[no-any-return]

    async def adecide(self, key: str, cost: int) -> RateLimitDecision:
        return self.decide(key, cost)

    def peek(self, key: str) -> Raw:
        now = self._ns() // 1000
        allowed, _, _, retry = self.evaluate(key, 1, now)[0]
        _, remaining, reset, _ = self.evaluate(key, 0, now)[0]
        return allowed, remaining, reset, retry

    async def apeek(self, key: str) -> Raw:
        return self.peek(key)

    def reset(self, key: str) -> None:
        raise NotImplementedError

    async def areset(self, key: str) -> None:
        self.reset(key)

    def __len__(self) -> int:
        raise NotImplementedError


class _GcraTable(_Table):
    """Token bucket: key -> theoretical arrival time, in two generations.

    A key is written to ``young``; once ``horizon`` (the longest a bucket takes to refill)
    has passed since the last rotation, ``old`` is dropped whole and ``young`` becomes
    ``old``. Whatever was in ``old`` had been idle for at least ``horizon``, so its bucket
    was full: forgetting it changes no answer.
    """

    __slots__ = ("burst", "horizon", "interval", "old", "rotate_at", "young")
    algorithm = "gcra"

    def __init__(self, rate: Rate, name: str, ns: Callable[[], int]) -> None:
        super().__init__(rate, name, ns)
        self.interval = rate.interval_us
        self.burst = rate.burst
        self.horizon = self.interval * self.burst
        self.young: dict[str, int] = {}
        self.old: dict[str, int] = {}
        self.rotate_at = 0

    def _rotate(self, now: int) -> None:
        self.old = {} if now >= self.rotate_at + self.horizon else self.young
        self.young = {}
        self.rotate_at = now + self.horizon

    def evaluate(self, key: str, cost: int, now: int) -> tuple[Raw, int]:
        if now >= self.rotate_at:
            self._rotate(now)
        tat = self.young.get(key)
        if tat is None:
            tat = self.old.get(key, 0)
        allowed, tat, remaining, reset, retry = gcra(tat, now, self.interval, self.burst, cost)
        return (allowed, remaining, reset, retry), tat

    def commit(self, key: str, state: int) -> None:
        self.young[key] = state

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        # evaluate() and commit() unrolled: this is the path every request takes.
        now = self._ns() // 1000
        if now >= self.rotate_at:
            self._rotate(now)
        tat = self.young.get(key)
        if tat is None:
            # Left in `old` (dropped at the next rotation) so that reading never mutates.
            tat = self.old.get(key, 0)
        allowed, tat, remaining, reset, retry = gcra(tat, now, self.interval, self.burst, cost)
        if allowed:
            self.young[key] = tat
        return _new(  # type: ignore[no-any-return]
            RateLimitDecision, (allowed, remaining, reset, retry, self.owner, False)
        )

    def acquire(self, key: str, cost: int) -> bool:
        # decide() without building a decision, for try_acquire.
        now = self._ns() // 1000
        if now >= self.rotate_at:
            self._rotate(now)
        tat = self.young.get(key)
        if tat is None:
            tat = self.old.get(key, 0)
        allowed, tat, _, _, _ = gcra(tat, now, self.interval, self.burst, cost)
        if allowed:
            self.young[key] = tat
        return allowed

    def reset(self, key: str) -> None:
        self.young.pop(key, None)
        self.old.pop(key, None)

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class _WindowTable(_Table):
    """Window counters: windows are aligned for every key, so the table tracks the window
    index once and keeps plain counts per key: ``current`` for this window and ``previous``
    for the one before. When the window moves on, ``previous`` is dropped whole: keys idle
    for two windows are forgotten without any scan.
    """

    __slots__ = ("current", "index", "limit", "previous", "window")

    def __init__(self, rate: Rate, name: str, ns: Callable[[], int]) -> None:
        super().__init__(rate, name, ns)
        self.window = rate.period_us
        self.limit = rate.limit
        self.index = -2
        self.current: dict[str, int] = {}
        self.previous: dict[str, int] = {}

    def _advance(self, index: int) -> None:
        self.previous = self.current if index == self.index + 1 else {}
        self.current = {}
        self.index = index

    def commit(self, key: str, state: int) -> None:
        self.current[key] = state

    def reset(self, key: str) -> None:
        self.current.pop(key, None)
        self.previous.pop(key, None)

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class _SlidingTable(_WindowTable):
    __slots__ = ()
    algorithm = "sliding_window"

    def evaluate(self, key: str, cost: int, now: int) -> tuple[Raw, int]:
        index = now // self.window
        if index != self.index:
            self._advance(index)
        allowed, _, _, curr, remaining, reset, retry = sliding_window(
            index,
            self.previous.get(key, 0),
            self.current.get(key, 0),
            now,
            self.window,
            self.limit,
            cost,
        )
        return (allowed, remaining, reset, retry), curr

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        now = self._ns() // 1000
        index = now // self.window
        if index != self.index:
            self._advance(index)
        current = self.current
        allowed, _, _, curr, remaining, reset, retry = sliding_window(
            index,
            self.previous.get(key, 0),
            current.get(key, 0),
            now,
            self.window,
            self.limit,
            cost,
        )
        if allowed:
            current[key] = curr
        return _new(  # type: ignore[no-any-return]
            RateLimitDecision, (allowed, remaining, reset, retry, self.owner, False)
        )

    def acquire(self, key: str, cost: int) -> bool:
        now = self._ns() // 1000
        index = now // self.window
        if index != self.index:
            self._advance(index)
        current = self.current
        allowed, _, _, curr, _, _, _ = sliding_window(
            index,
            self.previous.get(key, 0),
            current.get(key, 0),
            now,
            self.window,
            self.limit,
            cost,
        )
        if allowed:
            current[key] = curr
        return allowed


class _FixedTable(_WindowTable):
    __slots__ = ()
    algorithm = "fixed_window"

    def evaluate(self, key: str, cost: int, now: int) -> tuple[Raw, int]:
        index = now // self.window
        if index != self.index:
            self._advance(index)
        allowed, _, count, remaining, reset, retry = fixed_window(
            index, self.current.get(key, 0), now, self.window, self.limit, cost
        )
        return (allowed, remaining, reset, retry), count

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        now = self._ns() // 1000
        index = now // self.window
        if index != self.index:
            self._advance(index)
        current = self.current
        allowed, _, count, remaining, reset, retry = fixed_window(
            index, current.get(key, 0), now, self.window, self.limit, cost
        )
        if allowed:
            current[key] = count
        return _new(  # type: ignore[no-any-return]
            RateLimitDecision, (allowed, remaining, reset, retry, self.owner, False)
        )

    def acquire(self, key: str, cost: int) -> bool:
        now = self._ns() // 1000
        index = now // self.window
        if index != self.index:
            self._advance(index)
        current = self.current
        allowed, _, count, _, _, _ = fixed_window(
            index, current.get(key, 0), now, self.window, self.limit, cost
        )
        if allowed:
            current[key] = count
        return allowed


_TABLES: dict[str, Callable[[Rate, str, Callable[[], int]], _Table]] = {
    "gcra": _GcraTable,
    "sliding_window": _SlidingTable,
    "fixed_window": _FixedTable,
}


class MemoryBackend:
    """Rate-limit state in this process: fast, bounded, not shared between processes.

    Args:
        clock: where time is read (inject a `ManualClock` in tests).
    """

    local = True
    kind = "memory"

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._tables: list[_Table] = []

    def bind(self, algorithm: str, rate: Rate, name: str) -> BoundLimit:
        """A decider for one policy; each policy gets its own table."""
        try:
            factory = _TABLES[algorithm]
        except KeyError:
            raise ConfigurationError(
                f"algorithm {algorithm!r} is not one of {sorted(_TABLES)}"
            ) from None
        table = factory(rate, name, self.clock.monotonic_ns)
        self._tables.append(table)
        return table

    def decide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Check every (policy, key); store all only if all allow."""
        now = self.clock.monotonic_ns() // 1000
        evaluated = []
        everyone = True
        for bound, key in items:
            table = bound if isinstance(bound, _Table) else _own(bound)
            raw, state = table.evaluate(key, cost, now)
            everyone = everyone and raw[0]
            evaluated.append((table, key, raw, state))
        if everyone:
            for table, key, _, state in evaluated:
                table.commit(key, state)
            return [raw for _, _, raw, _ in evaluated]
        # Denied by some: nothing is charged, so the others report their state as it stands.
        return [
            raw if not raw[0] else table.evaluate(key, 0, now)[0]
            for table, key, raw, _ in evaluated
        ]

    def decide_limits(
        self, items: Sequence[tuple[RateLimiter, str]], cost: int
    ) -> list[RateLimitDecision]:
        """`decide_many` for limiters bound to this backend, answered as their decisions
        (what `hit_all` builds, without the raw answers in between; no events published).
        """
        now = self.clock.monotonic_ns() // 1000
        decisions: list[RateLimitDecision] = []
        states: list[tuple[_Table, str, int]] = []
        everyone = True
        for limiter, key in items:
            table: _Table = limiter._bound  # type: ignore[assignment]
            if type(table) is _GcraTable:
                # evaluate() in line for the default algorithm, as in decide().
                if now >= table.rotate_at:
                    table._rotate(now)
                tat = table.young.get(key)
                if tat is None:
                    tat = table.old.get(key, 0)
                allowed, state, remaining, reset, retry = gcra(
                    tat, now, table.interval, table.burst, cost
                )
            else:
                (allowed, remaining, reset, retry), state = table.evaluate(key, cost, now)
            if not allowed:
                everyone = False
            decisions.append(
                _new(RateLimitDecision, (allowed, remaining, reset, retry, limiter, False))
            )
            states.append((table, key, state))
        if everyone:
            for table, key, state in states:
                if type(table) is _GcraTable:
                    table.young[key] = state  # commit() in line
                else:
                    table.commit(key, state)
            return decisions
        # Denied by some: nothing is charged, so the others report their state as it stands.
        return [
            decision
            if not decision.allowed
            else _new(
                RateLimitDecision,
                (*limiter._bound.evaluate(key, 0, now)[0], limiter, False),  # type: ignore[attr-defined]
            )
            for decision, (limiter, key) in zip(decisions, items, strict=True)
        ]

    async def adecide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Same as `decide_many`; memory never waits."""
        return self.decide_many(items, cost)

    def __len__(self) -> int:
        """Keys held across all policies (young and old generations)."""
        return sum(len(table) for table in self._tables)


def _own(bound: object) -> _Table:
    raise ConfigurationError("all limits checked together must share one backend")
