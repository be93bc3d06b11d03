"""`LocalCopies`, the two-level cache's memory tier, on a manual clock: when a copy may be
kept, and for how long."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sysdesign_kit.cache import MemoryBackend
from sysdesign_kit.cache.local_copies import STRIPES, LocalCopies
from sysdesign_kit.clock import ManualClock


def serving(clock: ManualClock, local_ttl: float = 30.0) -> LocalCopies:
    copies = LocalCopies(MemoryBackend(clock=clock), local_ttl)
    copies.reset(serving=True)
    return copies


def other_stripe(key: str) -> str:
    """A key of namespace "ns" whose stripe is not ``key``'s."""
    stripe = hash(("ns", key)) % STRIPES
    return next(k for k in map(str, range(1000)) if hash(("ns", k)) % STRIPES != stripe)


def test_copies_are_kept_only_while_serving(clock: ManualClock) -> None:
    copies = LocalCopies(MemoryBackend(clock=clock), 30.0)
    assert not copies.serving
    assert not copies.ready.is_set()
    copies.keep("ns", "k", copies.token("ns", "k"), b"v", None, ())
    assert copies.memory.get("ns", "k") is None
    copies.reset(serving=True)
    assert copies.ready.is_set()
    copies.keep("ns", "k", copies.token("ns", "k"), b"v", None, ())
    assert copies.memory.get("ns", "k") == b"v"
    copies.reset(serving=False)  # every copy goes, and none is kept until serving again
    assert len(copies.memory) == 0
    assert not copies.ready.is_set()


@pytest.mark.parametrize(
    ("remaining", "ttl", "lives"),
    [(None, None, 30.0), (5.0, None, 5.0), (60.0, None, 30.0), (None, 10.0, 10.0), (None, 90, 30)],
)
def test_a_copy_lives_at_most_local_ttl(
    clock: ManualClock, remaining: float | None, ttl: float | None, lives: float
) -> None:
    copies = serving(clock)
    token = copies.token("ns", "k")
    if ttl is None:
        copies.keep("ns", "k", token, b"v", remaining, ())
    else:
        copies.wrote("ns", "k", token, b"v", ttl, ())
    clock.advance(lives - 0.01)
    assert copies.memory.get("ns", "k") == b"v"
    clock.advance(0.02)
    assert copies.memory.get("ns", "k") is None


KEY = "k"


def lost_and_back(copies: LocalCopies) -> None:
    copies.reset(serving=False)
    copies.reset(serving=True)


INVALIDATIONS: dict[str, tuple[Callable[[LocalCopies], None], bool]] = {
    # what happens between the token and the keep -> whether the copy is still kept
    "this key dropped": (lambda c: c.drop("ns", KEY), False),
    "this key written here": (lambda c: c.wrote("ns", KEY, c.token("ns", KEY), b"w", 9, ()), False),
    "a key of another stripe dropped": (lambda c: c.drop("ns", other_stripe(KEY)), True),
    "its namespace bumped": (lambda c: c.drop_namespace("ns"), False),
    "another namespace bumped": (lambda c: c.drop_namespace("other"), False),
    "a tag dropped": (lambda c: c.drop_tags(["t"]), False),
    "everything dropped": (lambda c: c.drop_all(), False),
    "subscription lost and back": (lost_and_back, False),
}


@pytest.mark.parametrize("case", sorted(INVALIDATIONS))
def test_a_read_through_is_not_kept_past_an_invalidation(clock: ManualClock, case: str) -> None:
    invalidate, kept = INVALIDATIONS[case]
    copies = serving(clock)
    token = copies.token("ns", KEY)  # the read asks the remote...
    invalidate(copies)  # ...this lands meanwhile...
    copies.keep("ns", KEY, token, b"old", None, ())  # ...and the answer comes back
    assert (copies.memory.get("ns", KEY) == b"old") is kept


def test_a_write_keeps_its_copy_unless_something_moved(clock: ManualClock) -> None:
    copies = serving(clock)
    copies.keep("ns", "k", copies.token("ns", "k"), b"old", None, ["t"])
    token = copies.token("ns", "k")
    copies.wrote("ns", "k", token, b"new", 60, ["u"])
    assert copies.memory.get("ns", "k") == b"new"
    copies.drop_tags(["t"])  # the copy carries the write's tags, not the old ones
    assert copies.memory.get("ns", "k") == b"new"
    copies.drop_tags(["u"])
    assert copies.memory.get("ns", "k") is None
    token = copies.token("ns", "k")
    copies.drop("ns", "k")  # another process's write came in between
    copies.wrote("ns", "k", token, b"mine", 60, ())
    assert copies.memory.get("ns", "k") is None
