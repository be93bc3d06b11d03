"""The `CacheBackend` contract (see ``cache/backend.py``), held against every backend: the
memory backend on a manual clock, and the Redis and two-level backends on the real server,
sync and async.

Each backend comes with ``expire(seconds)``: how the test lets time pass for it (the
manual clock is advanced; Redis is given a short real TTL and waited for, once per test).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sysdesign_kit.cache import CacheBackend, MemoryBackend
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.cache.two_level import TwoLevelBackend
from sysdesign_kit.clock import ManualClock


@dataclass
class Subject:
    backend: Any
    #: Let this much backend time pass.
    expire: Callable[[float], None]
    #: A TTL short enough for `expire` (real seconds for Redis).
    short_ttl: float


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("two-level", marks=pytest.mark.redis),
    ]
)
def subject(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Subject]:
    if request.param == "memory":
        yield Subject(MemoryBackend(clock=clock), clock.advance, 10.0)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    backend: Any = RedisBackend.from_url(url, prefix=prefix)
    if request.param == "two-level":
        # Subscribed first, so that reads are answered by its local tier where they can be.
        backend = TwoLevelBackend(backend)
        assert backend.wait_subscribed(5.0)
    yield Subject(backend, time.sleep, 0.05)
    backend.close()


def test_is_a_cache_backend(subject: Subject) -> None:
    assert isinstance(subject.backend, CacheBackend)
    assert isinstance(subject.backend.kind, str)
    assert isinstance(subject.backend.local, bool)


def test_set_get_replace(subject: Subject) -> None:
    b = subject.backend
    assert b.get("ns", "k") is None
    b.set("ns", "k", b"one", 60)
    assert b.get("ns", "k") == b"one"
    b.set("ns", "k", b"two", 60)
    assert b.get("ns", "k") == b"two"
    b.set("ns", "empty", b"", 60)
    assert b.get("ns", "empty") == b""
    binary = bytes(range(256)) * 4
    b.set("ns", "bin", binary, 60)
    assert b.get("ns", "bin") == binary


def test_namespaces_and_keys_are_separate(subject: Subject) -> None:
    b = subject.backend
    b.set("a", "k", b"a", 60)
    b.set("b", "k", b"b", 60)
    b.set("a:k", "x", b"c", 60)  # separators in names never collide
    b.set("a", "k:x", b"d", 60)
    assert [b.get("a", "k"), b.get("b", "k"), b.get("a:k", "x"), b.get("a", "k:x")] == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]
    b.set("{ns}", "{k}", b"braces", 60)
    assert b.get("{ns}", "{k}") == b"braces"


def test_ttl_expires(subject: Subject) -> None:
    b = subject.backend
    b.set("ns", "short", b"v", subject.short_ttl)
    b.set("ns", "long", b"v", 60)
    assert b.get("ns", "short") == b"v"
    subject.expire(subject.short_ttl * 1.5)
    assert b.get("ns", "short") is None
    assert b.get("ns", "long") == b"v"


def test_delete_says_whether_a_live_entry_was_there(subject: Subject) -> None:
    b = subject.backend
    b.set("ns", "k", b"v", 60)
    assert b.delete("ns", "k") is True
    assert b.get("ns", "k") is None
    assert b.delete("ns", "k") is False
    b.set("ns", "k", b"v", 60)
    b.bump("ns")
    assert b.delete("ns", "k") is False  # outdated: gone already as far as readers know


def test_bump_invalidates_only_its_namespace(subject: Subject) -> None:
    b = subject.backend
    assert b.version("ns") == 0
    b.set("ns", "k", b"v", 60)
    b.set("other", "k", b"v", 60)
    assert b.bump("ns") == 1
    assert b.version("ns") == 1
    assert b.get("ns", "k") is None
    assert b.get("other", "k") == b"v"
    b.set("ns", "k", b"new", 60)  # written under the new version
    assert b.get("ns", "k") == b"new"
    assert b.bump("ns") == 2
    assert b.version("other") == 0


def test_tags_are_global(subject: Subject) -> None:
    b = subject.backend
    b.set("a", "1", b"v", 60, ["red"])
    b.set("b", "2", b"v", 60, ["red", "blue"])
    b.set("a", "3", b"v", 60, ["blue"])
    b.set("a", "4", b"v", 60)
    b.invalidate_tags(["red"])
    assert [b.get("a", "1"), b.get("b", "2"), b.get("a", "3"), b.get("a", "4")] == [
        None,
        None,
        b"v",
        b"v",
    ]
    b.set("a", "1", b"again", 60, ["red"])  # a tag invalidates what was written before
    assert b.get("a", "1") == b"again"
    b.invalidate_tags(["blue", "green"])
    assert b.get("a", "3") is None
    assert b.get("a", "1") == b"again"
    b.invalidate_tags([])


def test_rewriting_without_a_tag_drops_it(subject: Subject) -> None:
    b = subject.backend
    b.set("ns", "k", b"v", 60, ["t"])
    b.set("ns", "k", b"w", 60)
    b.invalidate_tags(["t"])
    assert b.get("ns", "k") == b"w"


async def test_async_twins(subject: Subject) -> None:
    b = subject.backend
    await b.aset("ns", "k", b"v", 60, ["t"])
    assert await b.aget("ns", "k") == b"v"
    await b.ainvalidate_tags(["t"])
    assert await b.aget("ns", "k") is None
    await b.aset("ns", "k", b"v", 60)
    assert await b.abump("ns") == 1
    assert await b.aget("ns", "k") is None
    await b.aset("ns", "k", b"v", 60)
    assert await b.adelete("ns", "k") is True
    assert await b.adelete("ns", "k") is False
    if hasattr(b, "aclose"):
        await b.aclose()
