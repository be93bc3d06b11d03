"""The shared breaker state as Redis keeps it, and the pure-Python twin of ``lua/shared.lua``.

One Redis hash per breaker name holds a `Status` and the *shared window*: time buckets of
(calls, failures, slow calls) that every process adds its own counts to. The script applies
one operation to it atomically and answers with the shared status in one status line.
`step` is the same operation in Python, written with the functions of
`sysdesign_kit.breaker.state`, so the property test that holds the script against `step`
holds it against the breaker's own rules. Nothing here does I/O or imports redis.

The hash (every number in decimal; floats as ``%.17g``, which reads back exactly)::

    state   closed | open | half_open        trips   consecutive trips
    epoch   the shared period number         trials  half-open trial permits handed out
    since   when the period began (s)        passed  half-open trials that succeeded
    until   OPEN: when trials may start (s)  forced  1 when an operator forced the state
    b<n>    "calls failures slow" of bucket n (n = floor(now / width))

Times are seconds on the shared clock: Redis ``TIME``, or the caller's clock in tests. A
missing key is a fresh CLOSED breaker whose first epoch is the time in milliseconds, so a
breaker whose key expired and was made again never reuses the epochs of the old one.

Operations (``ARGV[1]``), with the caller's epoch ``e`` and three counts ``a, b, c``:

- ``f`` flush: in a CLOSED period ``e``, add (calls ``a``, failures ``b``, slow ``c``) to the
  bucket of ``now``, and trip if they hold a failed or slow call and the window says so
  (`state.record`, minimum calls counted over every process);
- ``t`` trip: like ``f``, then trip a CLOSED, unforced period ``e`` whatever the window says
  (a process's own window tripped it);
- ``a`` acquire: `state.acquire` (an OPEN breaker whose time is up turns HALF_OPEN and
  hands out trial permits); a HALF_OPEN period older than the trial lease starts again
  with no permit out, so trials lost with a crashed process do not block it for ever;
- ``r`` record a trial of period ``e`` (``a`` = 1 when it failed): `state.record`;
- ``l`` release a trial permit of period ``e``: `state.release`;
- ``o`` / ``c`` / ``z``: `state.force_open` / `state.force_closed` / `state.reset`.

A new period empties the window. The hash is written only when something changed, and then
expires ``ttl`` seconds later (after ``until`` for an OPEN breaker); a forced state, or an
open time grown past 10**9 s, never expires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sysdesign_kit.breaker import state as machine
from sysdesign_kit.breaker.state import BreakerPolicy, State, Status, Totals

__all__ = [
    "ACQUIRE",
    "FLUSH",
    "FORCE_CLOSED",
    "FORCE_OPEN",
    "OPERATIONS",
    "RECORD",
    "RELEASE",
    "RESET",
    "TRIP",
    "SharedRules",
    "SharedView",
    "format_reply",
    "parse_reply",
    "step",
]

FLUSH = "f"
TRIP = "t"
ACQUIRE = "a"
RECORD = "r"
RELEASE = "l"
FORCE_OPEN = "o"
FORCE_CLOSED = "c"
RESET = "z"
#: Each operation's name, for events and messages.
OPERATIONS = {
    FLUSH: "flush",
    TRIP: "trip",
    ACQUIRE: "acquire",
    RECORD: "record",
    RELEASE: "release",
    FORCE_OPEN: "force_open",
    FORCE_CLOSED: "force_closed",
    RESET: "reset",
}

CLOSED = State.CLOSED
OPEN = State.OPEN
HALF_OPEN = State.HALF_OPEN
_STATES = {s.value: s for s in State}
#: Seconds beyond which a hash is kept without expiry (an open time grown without a cap).
_MAX_LIFE = 1e9


def _float(value: float) -> str:
    return "%.17g" % value  # noqa: UP031 - the script formats with the same C format


def _optional(value: float | None) -> str:
    return "" if value is None else repr(value)


@dataclass(frozen=True, slots=True)
class SharedRules:
    """What the script needs to know about one breaker besides the operation.

    Attributes:
        policy: the breaker's thresholds and open times.
        width: seconds per bucket of the shared window.
        buckets: buckets in the shared window.
        lease: seconds after which a HALF_OPEN period with trials out starts again.
        ttl: seconds an untouched hash lives (beyond ``until`` when OPEN).
    """

    policy: BreakerPolicy
    width: float
    buckets: int
    lease: float
    ttl: float

    def args(self) -> tuple[bytes, ...]:
        """``ARGV[7:]`` of the script, encoded once per breaker."""
        p = self.policy
        values = (
            repr(p.failure_rate),
            str(p.minimum_calls),
            _optional(p.slow_call_rate),
            repr(p.open_for),
            repr(p.open_for_growth),
            _optional(p.open_for_max),
            str(p.half_open_calls),
            repr(self.width),
            str(self.buckets),
            repr(self.lease),
            repr(self.ttl),
        )
        return tuple(v.encode() for v in values)


class SharedView(NamedTuple):
    """The script's answer: the shared status after the operation.

    ``remaining`` is ``until - now`` in OPEN (inf when forced), 0.0 otherwise; ``admitted``
    answers an acquire; ``calls``, ``failures``, ``slow`` are the shared window's counts
    (CLOSED only).
    """

    state: State
    epoch: int
    remaining: float
    trips: int
    trials: int
    passed: int
    forced: bool
    admitted: bool
    calls: int
    failures: int
    slow: int


def parse_reply(reply: bytes | str) -> SharedView:
    """The script's status line as a `SharedView`.

    Raises:
        ValueError: not a reply of this script.
    """
    text = reply.decode() if isinstance(reply, bytes) else reply
    parts = text.split()
    if len(parts) != 11 or parts[0] not in _STATES:
        raise ValueError(f"not a shared breaker reply: {text[:80]!r}")
    n = [int(v) for v in parts[1:2] + parts[3:]]
    return SharedView(
        _STATES[parts[0]],
        n[0],
        float(parts[2]),
        n[1],
        n[2],
        n[3],
        n[4] == 1,
        n[5] == 1,
        n[6],
        n[7],
        n[8],
    )


def format_reply(view: SharedView) -> str:
    """The status line the script sends for ``view``."""
    return "%s %d %s %d %d %d %d %d %d %d %d" % (  # noqa: UP031 - mirrors the script
        view.state.value,
        view.epoch,
        _float(view.remaining),
        view.trips,
        view.trials,
        view.passed,
        view.forced,
        view.admitted,
        view.calls,
        view.failures,
        view.slow,
    )


def decode(fields: Mapping[str, str], now: float) -> tuple[Status, dict[int, list[int]], bool]:
    """A hash as (status, buckets, missing): a missing hash is a fresh CLOSED breaker."""
    if not fields:
        return Status(CLOSED, math.floor(now * 1000), now), {}, True
    buckets: dict[int, list[int]] = {}
    for field, value in fields.items():
        if field.startswith("b"):
            calls, failures, slow = value.split()
            buckets[int(field[1:])] = [int(calls), int(failures), int(slow)]
    status = Status(
        _STATES[fields["state"]],
        int(fields["epoch"]),
        float(fields["since"]),
        float(fields["until"]),
        int(fields["trips"]),
        int(fields["trials"]),
        int(fields["passed"]),
        fields["forced"] == "1",
    )
    return status, buckets, False


def encode(status: Status, buckets: Mapping[int, list[int]]) -> dict[str, str]:
    """The hash for a status and its window (the inverse of `decode`)."""
    fields = {
        "state": status.state.value,
        "epoch": "%d" % status.epoch,  # noqa: UP031
        "since": _float(status.since),
        "until": _float(status.open_until),
        "trips": "%d" % status.trips,  # noqa: UP031
        "trials": "%d" % status.trials,  # noqa: UP031
        "passed": "%d" % status.passed,  # noqa: UP031
        "forced": "1" if status.forced else "0",
    }
    for number, (calls, failures, slow) in buckets.items():
        fields["b%d" % number] = "%d %d %d" % (calls, failures, slow)  # noqa: UP031
    return fields


def _totals(buckets: Mapping[int, list[int]], oldest: int) -> Totals:
    calls = failures = slow = 0
    for number, counts in buckets.items():
        if number > oldest:
            calls += counts[0]
            failures += counts[1]
            slow += counts[2]
    return Totals(calls, failures, slow)


#: A window that trips any policy: how a process's own trip is recorded.
def _tripping(policy: BreakerPolicy) -> Totals:
    return Totals(policy.minimum_calls, policy.minimum_calls, 0)


def step(
    fields: Mapping[str, str],
    op: str,
    now: float,
    epoch: int | None,
    counts: tuple[int, int, int],
    rules: SharedRules,
) -> tuple[SharedView, dict[str, str] | None, int | None]:
    """Apply one operation to a stored hash, as the script does.

    Args:
        fields: the hash as stored (empty when the key is missing).
        op: one of the operation codes.
        now: the shared clock's seconds.
        epoch: the caller's shared epoch (None when it knows none).
        counts: ``(a, b, c)``, see the module docstring.
        rules: the breaker's policy and the shared window's shape.

    Returns:
        The reply, the hash to store (None when nothing changed) and its time to live in
        milliseconds (None: no expiry).
    """
    policy = rules.policy
    old, buckets, missing = decode(fields, now)
    a, b, c = counts
    new = old
    admitted = False
    changed = missing
    current = math.floor(now / rules.width)
    oldest = current - rules.buckets
    if op in (FLUSH, TRIP):
        if old.state is CLOSED and epoch == old.epoch:
            if a > 0 or b > 0 or c > 0:
                bucket = buckets.setdefault(current, [0, 0, 0])
                bucket[0] += a
                bucket[1] += b
                bucket[2] += c
                changed = True
            for number in [n for n in buckets if n <= oldest]:
                del buckets[number]
                changed = True
            if op == TRIP:
                new = machine.record(policy, old, now, epoch, failed=True, totals=_tripping(policy))
            else:
                new = machine.record(
                    policy,
                    old,
                    now,
                    epoch,
                    failed=b > 0,
                    slow=c > 0,
                    totals=_totals(buckets, oldest),
                )
    elif op == ACQUIRE:
        status = old
        if status.state is HALF_OPEN and now >= status.since + rules.lease:
            status = Status(HALF_OPEN, status.epoch + 1, now, 0.0, status.trips)
        answer = machine.acquire(policy, status, now)
        new, admitted = answer.status, answer.admitted
    elif op == RECORD:
        new = machine.record(policy, old, now, -1 if epoch is None else epoch, failed=a > 0)
    elif op == RELEASE:
        new = machine.release(old, -1 if epoch is None else epoch)
    elif op == FORCE_OPEN:
        new = machine.force_open(old, now)
    elif op == FORCE_CLOSED:
        new = machine.force_closed(old, now)
    elif op == RESET:
        new = machine.reset(old, now)
    else:
        raise ValueError(f"unknown operation {op!r}")
    if new.epoch != old.epoch:
        buckets = {}
    if new != old:
        changed = True
    stored: dict[str, str] | None = None
    ttl: int | None = None
    if changed:
        stored = encode(new, buckets)
        if not new.forced:
            life = rules.ttl
            if new.state is OPEN and new.open_until > now:
                life += new.open_until - now
            if life <= _MAX_LIFE:
                ttl = math.ceil(life * 1000)
    totals = _totals(buckets, oldest) if new.state is CLOSED else Totals(0, 0, 0)
    view = SharedView(
        new.state,
        new.epoch,
        new.open_until - now if new.state is OPEN else 0.0,
        new.trips,
        new.trials,
        new.passed,
        new.forced,
        admitted,
        *totals,
    )
    return view, stored, ttl
