"""MemoryBackend: exact TTL, LRU by count and by bytes, namespace versions, tags."""

from __future__ import annotations

import threading

import pytest

from sysdesign_kit.cache import CacheBackend, MemoryBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError


def test_is_a_cache_backend(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    assert isinstance(backend, CacheBackend)
    assert backend.local
    assert backend.kind == "memory"


def test_ttl_is_exact(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "k", b"v", 10.0)
    clock.advance(9.999)
    assert backend.get("ns", "k") == b"v"
    clock.advance(0.001)
    assert backend.get("ns", "k") is None
    assert len(backend) == 0
    assert backend.size_bytes == 0


def test_lookup_skips_ttl_but_not_versions(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "k", b"v", 1.0)
    clock.advance(2)
    assert backend.lookup("ns", "k") == b"v"  # the cache judges by the envelope
    backend.bump("ns")
    assert backend.lookup("ns", "k") is None
    assert backend.lookup("ns", "absent") is None


def test_lru_by_count_evicts_the_least_recently_used(clock: ManualClock) -> None:
    backend = MemoryBackend(max_entries=3, clock=clock)
    for key in "abc":
        backend.set("ns", key, key.encode(), 60)
    assert backend.get("ns", "a") == b"a"  # a is now the most recent
    backend.set("ns", "d", b"d", 60)
    assert [k for k in "abcd" if backend.get("ns", k) is not None] == ["a", "c", "d"]
    assert backend.lookup("ns", "c") == b"c"  # lookup refreshes recency too
    backend.set("ns", "e", b"e", 60)
    assert backend.get("ns", "a") is None
    assert len(backend) == 3


def test_lru_by_bytes_counts_value_and_key(clock: ManualClock) -> None:
    backend = MemoryBackend(max_bytes=100, clock=clock)
    backend.set("ns", "k1", b"x" * 38, 60)  # 40 bytes with the key
    backend.set("ns", "k2", b"x" * 38, 60)  # 80
    assert backend.size_bytes == 80
    backend.get("ns", "k1")
    backend.set("ns", "k3", b"x" * 38, 60)  # 120 > 100: k2 (least recent) goes
    assert backend.get("ns", "k2") is None
    assert backend.get("ns", "k1") is not None
    assert backend.get("ns", "k3") is not None
    assert backend.size_bytes == 80


def test_an_entry_larger_than_the_store_is_not_kept(clock: ManualClock) -> None:
    backend = MemoryBackend(max_bytes=10, clock=clock)
    backend.set("ns", "k", b"small", 60)
    assert backend.put("ns", "k", b"x" * 20, 20, 60) is False
    assert backend.get("ns", "k") is None
    assert backend.size_bytes == 0


def test_replacing_an_entry_keeps_the_byte_count_exact(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "k", b"x" * 10, 60)
    backend.set("ns", "k", b"x" * 4, 60)
    assert backend.size_bytes == 5
    assert len(backend) == 1


def test_bump_invalidates_only_its_namespace(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("a", "k", b"1", 60)
    backend.set("b", "k", b"2", 60)
    assert backend.bump("a") == 1
    assert backend.version("a") == 1
    assert backend.version("b") == 0
    assert backend.get("a", "k") is None
    assert backend.get("b", "k") == b"2"
    backend.set("a", "k", b"3", 60)  # written under the new version
    assert backend.get("a", "k") == b"3"


def test_tags_are_global_and_removed_with_their_entries(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("a", "p1", b"1", 60, ("product:1", "all"))
    backend.set("b", "page1", b"2", 60, ("product:1",))
    backend.set("a", "p2", b"3", 60, ("product:2", "all"))
    backend.invalidate_tags(["product:1"])
    assert backend.get("a", "p1") is None
    assert backend.get("b", "page1") is None
    assert backend.get("a", "p2") == b"3"
    backend.invalidate_tags(["all", "never-used"])
    assert len(backend) == 0
    assert backend.size_bytes == 0
    assert backend._tagged == {}


def test_rewriting_without_a_tag_drops_it(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("a", "k", b"1", 60, ("t",))
    backend.set("a", "k", b"2", 60)
    backend.invalidate_tags(["t"])
    assert backend.get("a", "k") == b"2"


def test_delete_says_whether_a_live_entry_was_there(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "k", b"v", 5)
    assert backend.delete("ns", "k") is True
    assert backend.delete("ns", "k") is False
    backend.set("ns", "k", b"v", 5)
    clock.advance(5)
    assert backend.delete("ns", "k") is False


def test_expired_and_outdated_entries_are_reclaimed(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "old", b"v", 1)
    backend.set("other", "k", b"v", 100)
    backend.set("ns", "live", b"v", 100)
    backend.bump("other")
    clock.advance(2)
    assert backend.purge_expired() == 2
    assert len(backend) == 1
    assert backend.size_bytes == len(b"v") + len("live")


def test_writes_sweep_dead_entries_at_the_lru_end(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.set("ns", "a", b"v", 1)
    backend.set("ns", "b", b"v", 1)
    clock.advance(2)
    backend.set("ns", "c", b"v", 10)
    assert len(backend) == 1


def test_clear_keeps_versions(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.bump("ns")
    backend.set("ns", "k", b"v", 10, ("t",))
    backend.clear()
    assert len(backend) == 0
    assert backend.version("ns") == 1
    assert "entries=0" in repr(backend)


async def test_async_twins(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    await backend.aset("ns", "k", b"v", 10, ("t",))
    assert await backend.aget("ns", "k") == b"v"
    await backend.ainvalidate_tags(["t"])
    assert await backend.aget("ns", "k") is None
    await backend.aset("ns", "k", b"v", 10)
    assert await backend.adelete("ns", "k") is True
    assert await backend.abump("ns") == 1


def test_threads_keep_the_accounting_exact(clock: ManualClock) -> None:
    backend = MemoryBackend(max_entries=50, max_bytes=10_000, clock=clock)

    def work(worker: int) -> None:
        for i in range(500):
            key = f"k{(worker * 7 + i) % 80}"
            backend.set("ns", key, b"x" * (i % 30), 60, (f"t{i % 5}",))
            backend.get("ns", key)
            if i % 50 == 0:
                backend.invalidate_tags([f"t{worker}"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(backend) <= 50
    assert backend.size_bytes == sum(entry[4] for entry in backend._data.values())
    tagged = {k for keys in backend._tagged.values() for k in keys}
    assert tagged <= set(backend._data)


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_entries", 0), ("max_entries", True), ("max_bytes", -1), ("max_bytes", 1.5)],
)
def test_bad_settings(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        MemoryBackend(**{option: value})  # type: ignore[arg-type]


def test_bad_clock() -> None:
    with pytest.raises(ConfigurationError, match="clock"):
        MemoryBackend(clock=object())  # type: ignore[arg-type]
