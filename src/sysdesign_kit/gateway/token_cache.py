"""A bounded cache of verified tokens: a repeat token costs a dictionary lookup.

Entries are keyed by the whole token string, not by its signature segment alone: a token
whose header or payload was swapped under a known signature must never hit. An entry lives
no longer than the token (its ``exp``) and never longer than ``max_age``, so a removed or
rotated key stops being honoured within ``max_age``; the least recently used entry goes
first when the cache is full. Only verified tokens are put here, so a caller cannot fill it
with garbage; the worst-case memory is ``max_entries`` times the largest accepted token.

Time is read from the injected clock's wall time (``exp`` is wall time), once per lookup.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Generic, TypeVar

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError

__all__ = ["TokenCache"]

V = TypeVar("V")


class TokenCache(Generic[V]):
    """Maps a verified token to what it proved, until the token or ``max_age`` expires.

    Args:
        max_entries: how many tokens are kept; the least recently used one is dropped first.
        max_age: the longest an entry is trusted, in seconds, however late the token expires.
        clock: where wall time is read from.

    Raises:
        ConfigurationError: ``max_entries`` is not a positive int or ``max_age`` is not a
            positive finite number.
    """

    __slots__ = ("_clock", "_entries", "_max_age", "_max_entries")

    def __init__(
        self, *, max_entries: int = 4096, max_age: float = 60.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive int, got {max_entries!r}")
        if (
            isinstance(max_age, bool)
            or not isinstance(max_age, int | float)
            or not math.isfinite(max_age)
            or max_age <= 0
        ):
            raise ConfigurationError(f"max_age must be a positive number, got {max_age!r}")
        self._max_entries = max_entries
        self._max_age = float(max_age)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    @property
    def max_entries(self) -> int:
        """How many tokens are kept at most."""
        return self._max_entries

    @property
    def max_age(self) -> float:
        """The longest an entry is trusted, in seconds."""
        return self._max_age

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> V | None:
        """What ``token`` proved, or None if it is not held (or no longer valid)."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock.time() >= entry[1]:
            self._entries.pop(token, None)
            return None
        # contextlib.suppress would cost more than the whole lookup.
        try:  # noqa: SIM105
            self._entries.move_to_end(token)
        except KeyError:  # dropped by another thread between the two calls
            pass
        return entry[0]

    def put(self, token: str, value: V, expires_at: float | None) -> None:
        """Hold ``value`` for ``token`` until ``expires_at`` (wall seconds; None: no ``exp``),
        and never beyond ``max_age`` from now."""
        now = self._clock.time()
        deadline = now + self._max_age
        if expires_at is not None and not expires_at >= deadline:  # NaN: not stored
            deadline = expires_at
        if not deadline > now:  # already expired (or NaN): nothing to remember
            return
        entries = self._entries
        entries[token] = (value, deadline)
        entries.move_to_end(token)
        while len(entries) > self._max_entries:
            try:
                entries.popitem(last=False)
            except KeyError:  # emptied by another thread
                break

    def discard(self, token: str) -> None:
        """Forget ``token`` (e.g. it was revoked)."""
        self._entries.pop(token, None)

    def clear(self) -> None:
        """Forget every token (e.g. after removing a compromised key)."""
        self._entries.clear()
