"""The three limiting algorithms as pure functions over (state, now, rate, cost).

Time is whole microseconds (``now``) so every answer is exact, and the Lua twins in ``lua/``
compute the same integers with IEEE doubles (all values stay below 2**53). State is passed
as flat ints (no tuples) because these run on every request.

Each function returns ``(allowed, *new_state, remaining, reset_us, retry_us)``:

- new state: the key's state after the call; unchanged when denied (a denial consumes
  nothing).
- ``remaining``: requests of cost 1 that would still be allowed right now.
- ``reset_us``: time until the key is fully recovered (its whole quota is back); this is
  also when memory may forget the key and when Redis expires it.
- ``retry_us``: when denied, the wait until the same cost would be allowed; 0 when allowed.

``cost == 0`` asks for the key's status: always allowed, state unchanged, ``remaining`` and
``reset_us`` as they stand now (used by peek, and for limits left uncharged because another
limit checked with them denied the request).
"""

from __future__ import annotations

__all__ = ["fixed_window", "gcra", "sliding_window"]


def gcra(
    tat: int, now: int, interval: int, burst: int, cost: int
) -> tuple[bool, int, int, int, int]:
    """Token bucket in GCRA form: the state is one timestamp, the theoretical arrival time.

    Args:
        tat: theoretical arrival time of the next request (0 for a new key).
        now: current time in microseconds.
        interval: microseconds per token (emission interval).
        burst: bucket capacity in tokens.
        cost: tokens this request takes.

    Returns:
        ``(allowed, tat, remaining, reset_us, retry_us)``.
    """
    tau = interval * burst
    base = tat if tat > now else now
    new_tat = base + cost * interval
    allow_at = new_tat - tau
    if allow_at > now:
        return False, base, (tau - base + now) // interval, base - now, allow_at - now
    return True, new_tat, (tau - new_tat + now) // interval, new_tat - now, 0


def sliding_window(
    index: int, prev: int, curr: int, now: int, window: int, limit: int, cost: int
) -> tuple[bool, int, int, int, int, int, int]:
    """Sliding window counter: the previous window's count weighted by its overlap.

    The estimate is ``prev * (window - elapsed) / window + curr``; comparisons are made
    multiplied through by ``window`` so they stay in integers.

    Args:
        index, prev, curr: the stored window index (``now // window`` when written) and the
            counts of the window before it and of it (all 0 for a new key).

    Returns:
        ``(allowed, index, prev, curr, remaining, reset_us, retry_us)``.
    """
    current = now // window
    if index != current:
        prev = curr if index == current - 1 else 0
        curr = 0
    elapsed = now - current * window
    weighted = prev * (window - elapsed)  # the previous window's share, times `window`
    if weighted + (curr + cost) * window > limit * window:
        if curr + cost <= limit:
            # Wait until the previous window's share has shrunk enough.
            retry = window - ((limit - curr - cost) * window) // prev - elapsed
        else:
            # Only the next window can hold it; there, this window's count weighs in.
            retry = 2 * window - ((limit - cost) * window) // curr - elapsed
        remaining = limit - curr + (-weighted // window)
        reset = (2 * window if curr else window) - elapsed
        return False, current, prev, curr, (remaining if remaining > 0 else 0), reset, retry
    curr += cost
    remaining = limit - curr + (-weighted // window)
    # Fully recovered once both counted windows have slid by (at once if nothing counts).
    reset = (2 * window - elapsed) if curr else ((window - elapsed) if prev else 0)
    return True, current, prev, curr, (remaining if remaining > 0 else 0), reset, 0


def fixed_window(
    index: int, count: int, now: int, window: int, limit: int, cost: int
) -> tuple[bool, int, int, int, int, int]:
    """Fixed window counter: at most ``limit`` per window aligned on multiples of ``window``.

    Returns:
        ``(allowed, index, count, remaining, reset_us, retry_us)``.
    """
    current = now // window
    if index != current:
        count = 0
    reset = (current + 1) * window - now
    if count + cost > limit:
        return False, current, count, limit - count, reset, reset
    count += cost
    return True, current, count, limit - count, (reset if count else 0), 0
