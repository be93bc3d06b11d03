"""`TwoLevelBackend` beyond the shared contract (``test_redis_contract.py`` runs that):
local hits do no I/O, copies are bounded in time, invalidations reach other processes,
the subscriber survives Redis dying and hanging, and a `Cache` works over it end to end.

The real Redis (REDIS_URL) serves most tests, each on a prefix of its own; the outage tests
run their own ``redis-server`` (the helper of ``tests/integration/test_redis_fault.py``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sysdesign_kit.backends.redis import Connections
from sysdesign_kit.cache import Cache, MemoryBackend
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.cache.two_level import TwoLevelBackend
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError
from tests.integration.test_redis_fault import RedisServer

pytestmark = pytest.mark.redis

#: How long an invalidation may take to arrive on a loaded 2-core machine.
BOUND = 1.0


def held(backend: TwoLevelBackend, key: str, value: bytes) -> Callable[[], bool]:
    """Whether ``backend`` reads ``value`` under ``key`` and holds it in memory."""
    return lambda: backend.get("ns", key) == backend.memory.get("ns", key) == value


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.fixture
def make(redis_url: str, redis_prefix: str) -> Iterator[Callable[..., TwoLevelBackend]]:
    """Subscribed two-level backends on this test's prefix ("nodes" sharing entries)."""
    made: list[TwoLevelBackend] = []

    def make(url: str = redis_url, timeout: float = 0.25, **options: Any) -> TwoLevelBackend:
        remote = RedisBackend.from_url(
            url, prefix=redis_prefix, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        backend = TwoLevelBackend(remote, **options)
        made.append(backend)
        assert backend.wait_subscribed(5.0)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_settings_are_checked(redis_url: str) -> None:
    remote = RedisBackend.from_url(redis_url)
    for options in ({"local_ttl": 0}, {"local_ttl": float("inf")}, {"heartbeat": -1}):
        with pytest.raises(ConfigurationError):
            TwoLevelBackend(remote, **options)
    with pytest.raises(ConfigurationError, match="memory"):
        TwoLevelBackend(remote, memory=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="remote"):
        TwoLevelBackend(MemoryBackend())  # type: ignore[arg-type]
    backend = TwoLevelBackend(remote, channel="mine")
    assert (backend.kind, backend.local, backend.channel) == ("two-level", False, "mine")
    assert TwoLevelBackend(remote).channel == "sdk:c:invalidate"
    remote.close()


class Counted(Connections):
    """The blocking connections of a remote, counting the commands sent; ``after`` runs
    once, after the next reply came and before it is returned."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.calls = 0
        self.after: Callable[[], None] | None = None

    def call(self, command: bytes) -> Any:
        self.calls += 1
        reply = super().call(command)
        after, self.after = self.after, None
        if after is not None:
            after()
        return reply


def test_a_local_hit_does_no_redis_call(make: Callable[..., TwoLevelBackend]) -> None:
    backend = make()
    counted = backend.remote.connections = Counted(backend.remote.client)
    backend.set("ns", "k", b"v", 60)
    assert 1 <= counted.calls <= 2  # the write and its PUBLISH in one script (+EVAL once)
    written = counted.calls
    assert backend.memory.get("ns", "k") == b"v"
    for _ in range(1000):
        assert backend.get("ns", "k") == b"v"
    assert counted.calls == written
    backend.memory.clear()
    assert backend.get("ns", "k") == b"v"  # a local miss reads Redis and keeps a copy
    assert backend.get("ns", "k") == b"v"
    assert written + 1 <= counted.calls <= written + 2


async def test_an_async_local_hit_awaits_nothing(make: Callable[..., TwoLevelBackend]) -> None:
    backend = make()
    await backend.aset("ns", "k", b"v", 60)
    coroutine = backend.aget("ns", "k")
    # Done at its first step: it never suspended, so it awaited no I/O.
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert done.value.value == b"v"
    backend.memory.clear()
    assert await backend.aget("ns", "k") == b"v"  # read through, kept again
    coroutine = backend.aget("ns", "k")
    with pytest.raises(StopIteration):
        coroutine.send(None)
    await backend.aclose()


def test_a_copy_lives_at_most_local_ttl_or_the_entrys_ttl(
    make: Callable[..., TwoLevelBackend], redis_url: str, redis_prefix: str
) -> None:
    writer = make()
    reader = make(local_ttl=0.2)
    writer.set("ns", "long", b"v1", 60)
    writer.set("ns", "short", b"v1", 0.1)
    wait_for(lambda: reader.received == 2)  # so that no late message drops the copy
    start = time.monotonic()  # the copy is made after this, so it lives until 0.2 s later
    wait_for(held(reader, "long", b"v1"))
    held_at = time.monotonic()
    # A write that announces nothing (as when a message is lost) is seen once the copy
    # has lived local_ttl, not before.
    silent = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    silent.set("ns", "long", b"v2", 60)
    silent.close()
    wait_for(lambda: reader.get("ns", "long") == b"v2", 0.2 + BOUND)
    assert time.monotonic() - start >= 0.2
    assert time.monotonic() - held_at < 0.2 + BOUND
    assert reader.get("ns", "short") in (b"v1", None)
    time.sleep(0.15)
    assert reader.get("ns", "short") is None  # the copy went with the entry's TTL


def test_tags_of_a_read_through_copy_are_known(make: Callable[..., TwoLevelBackend]) -> None:
    writer, reader = make(), make()
    writer.set("ns", "red", b"r", 60, ["red", "a:b{c}%"])
    writer.set("ns", "plain", b"p", 60)
    wait_for(lambda: reader.received == 2)
    wait_for(held(reader, "red", b"r"))
    wait_for(held(reader, "plain", b"p"))
    writer.invalidate_tags(["a:b{c}%"])
    wait_for(lambda: reader.received == 3)
    assert reader.memory.get("ns", "red") is None
    assert reader.memory.get("ns", "plain") == b"p"  # only the tagged copy went
    assert reader.get("ns", "red") is None


def test_an_invalidation_during_a_read_through_stops_the_copy(
    make: Callable[..., TwoLevelBackend],
) -> None:
    writer, reader = make(), make()
    writer.set("ns", "k", b"old", 60)
    wait_for(lambda: reader.received == 1)
    counted = reader.remote.connections = Counted(reader.remote.client)

    def meanwhile() -> None:
        # Redis answered "old"; the answer is still on its way when the invalidation comes.
        writer.set("ns", "k", b"new", 60)
        wait_for(lambda: reader.received == 2)

    counted.after = meanwhile
    assert reader.get("ns", "k") == b"old"
    assert reader.memory.get("ns", "k") is None  # not kept: it would be stale
    assert reader.get("ns", "k") == b"new"


def test_own_messages_are_skipped_and_unknown_ones_clear_everything(
    make: Callable[..., TwoLevelBackend], redis_url: str
) -> None:
    backend = make()
    client = redis.Redis.from_url(redis_url)
    for received, garbage in enumerate([b"not json", b'"kt"', b'["o", "k", 1, 2]'], 1):
        backend.set("ns", "k", b"v", 60)
        assert backend.memory.get("ns", "k") == b"v"
        client.publish(backend.channel, garbage)
        # Messages arrive in order: the echo of the set came first and was skipped.
        wait_for(lambda n=received: backend.received == n)  # type: ignore[misc]
        assert len(backend.memory) == 0
    client.close()


def test_close_stops_the_subscriber_and_reads_go_to_redis(
    make: Callable[..., TwoLevelBackend],
) -> None:
    backend = make()
    backend.set("ns", "k", b"v", 60)
    backend.close()
    assert not backend.subscribed
    assert len(backend.memory) == 0
    assert backend.get("ns", "k") == b"v"
    assert len(backend.memory) == 0  # not restarted by use
    backend.start()
    assert backend.wait_subscribed(5.0)
    assert backend.get("ns", "k") == b"v"
    assert backend.memory.get("ns", "k") == b"v"


# -- other processes --------------------------------------------------------------------------

#: A second node: holds a key locally on request, then reports when it sees it change.
PEER = """
import json, sys, time
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.cache.two_level import TwoLevelBackend

backend = TwoLevelBackend(RedisBackend.from_url(sys.argv[1], prefix=sys.argv[2]), local_ttl=60)
assert backend.wait_subscribed(10)
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    ns, key, expected, sent = json.loads(line)
    held = expected.encode()
    deadline = time.monotonic() + 5
    # Every message sent so far applied, so the copy held now can only go by the next one.
    while (
        backend.received < sent
        or backend.get(ns, key) != held
        or backend.memory.get(ns, key) != held
    ):
        if time.monotonic() > deadline:
            held = b"never held"
            break
    print(json.dumps(held.decode()), flush=True)
    while backend.get(ns, key) == held and time.monotonic() < deadline:
        time.sleep(0.0002)
    value = backend.get(ns, key)
    print(json.dumps([time.monotonic(), value and value.decode()]), flush=True)
backend.close()
"""


@pytest.mark.slow
def test_changes_reach_another_process(
    make: Callable[..., TwoLevelBackend],
    redis_url: str,
    redis_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    writer = make()
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, redis_url, redis_prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(*request: object) -> Any:
        assert peer.stdin is not None
        assert peer.stdout is not None
        if request:
            peer.stdin.write(json.dumps(request) + "\n")
            peer.stdin.flush()
        return json.loads(peer.stdout.readline())

    changes: list[tuple[str, Callable[[], object], str | None]] = [
        ("set", lambda: writer.set("ns", "k", b"two", 60), "two"),
        ("delete", lambda: writer.delete("ns", "k"), None),
        ("bump", lambda: writer.bump("ns"), None),
        ("tags", lambda: writer.invalidate_tags(["t"]), None),
    ]
    latencies = {}
    try:
        assert ask() == "ready"
        for sent, (name, change, expected) in enumerate(changes):
            writer.set("ns", "k", b"one", 60, ["t"])
            # held in the peer's memory (each change and each set publish one message)
            assert ask("ns", "k", "one", 2 * sent + 1) == "one"
            start = time.monotonic()
            change()
            seen, value = ask()
            assert value == expected, name
            latencies[name] = seen - start
    finally:
        peer.communicate(timeout=10)
    record_property("latency_ms", {k: round(v * 1000, 2) for k, v in latencies.items()})
    print("invalidation latency ms:", {k: round(v * 1000, 2) for k, v in latencies.items()})
    assert max(latencies.values()) < BOUND, latencies


# -- Redis dies, hangs and comes back ---------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH: this test runs its own")
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


def nodes(server: RedisServer, make: Callable[..., TwoLevelBackend]) -> list[TwoLevelBackend]:
    return [make(server.url, timeout=0.1, heartbeat=0.2) for _ in range(2)]


def coherent(writer: TwoLevelBackend, reader: TwoLevelBackend, value: bytes) -> None:
    """A copy in ``reader`` is dropped when ``writer`` changes the key."""
    writer.set("ns", "k", b"before", 60)
    wait_for(held(reader, "k", b"before"))
    writer.set("ns", "k", value, 60)
    wait_for(lambda: reader.get("ns", "k") == value, BOUND)


@pytest.mark.slow
async def test_a_dead_redis_clears_and_bypasses_the_local_tier(
    server: RedisServer, make: Callable[..., TwoLevelBackend]
) -> None:
    writer, reader = nodes(server, make)
    coherent(writer, reader, b"first")
    server.stop()
    wait_for(lambda: not reader.subscribed and not writer.subscribed)
    assert len(reader.memory) == 0
    with pytest.raises(BackendUnavailable):
        reader.get("ns", "k")
    with pytest.raises(BackendUnavailable):
        await reader.aget("ns", "k")
    with pytest.raises(BackendUnavailable):
        writer.set("ns", "k", b"v", 60)
    server.start()  # same port, empty
    assert reader.wait_subscribed(10)
    assert writer.wait_subscribed(10)
    assert reader.get("ns", "k") is None
    coherent(writer, reader, b"again")


@pytest.mark.slow
def test_a_hung_redis_is_noticed_by_the_heartbeat(
    server: RedisServer, make: Callable[..., TwoLevelBackend]
) -> None:
    writer, reader = nodes(server, make)
    coherent(writer, reader, b"first")
    server.signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        wait_for(lambda: not reader.subscribed)
        noticed = time.monotonic() - start
        assert len(reader.memory) == 0
        with pytest.raises(BackendUnavailable):
            reader.get("ns", "k")
    finally:
        server.signal(signal.SIGCONT)
    assert noticed < 4 * reader.heartbeat + BOUND
    assert reader.wait_subscribed(10)
    assert writer.wait_subscribed(10)
    coherent(writer, reader, b"again")


# -- a Cache over it ----------------------------------------------------------------------------


async def test_caches_on_two_nodes_stay_coherent(make: Callable[..., TwoLevelBackend]) -> None:
    one, two = make(), make()
    first, second = Cache("products", backend=one), Cache("products", backend=two)
    loads = 0

    async def load() -> dict[str, int]:
        nonlocal loads
        loads += 1
        return {"price": 10}

    assert await first.get_or_load("p:1", load, tags=["product:1"]) == {"price": 10}
    # The set's message arrives first: it would drop a copy made before it.
    await asyncio.to_thread(wait_for, lambda: two.received == 1)
    assert await first.get_or_load("p:1", load) == {"price": 10}
    assert await second.get_or_load("p:1", load) == {"price": 10}
    assert loads == 1
    assert two.memory.get("products", "p:1") is not None  # served from memory from now on

    await first.set("p:1", {"price": 12}, tags=["product:1"])
    start = time.monotonic()
    while await second.get("p:1") != {"price": 12}:
        assert time.monotonic() - start < BOUND
        await asyncio.sleep(0.001)

    await second.invalidate_tags("product:1")
    start = time.monotonic()
    while await first.get("p:1") is not None:
        assert time.monotonic() - start < BOUND
        await asyncio.sleep(0.001)
    await one.aclose()
    await two.aclose()


def test_blocking_caches_on_two_nodes_stay_coherent(make: Callable[..., TwoLevelBackend]) -> None:
    first = Cache("products", backend=make()).sync
    second = Cache("products", backend=make()).sync
    assert first.get_or_load("p:1", lambda: {"price": 13}) == {"price": 13}
    assert second.get_or_load("p:1", lambda: {"price": 0}) == {"price": 13}
    first.delete("p:1")
    wait_for(lambda: second.get("p:1") is None, BOUND)
    assert second.get_or_load("p:1", lambda: {"price": 14}) == {"price": 14}
    wait_for(lambda: first.get("p:1") == {"price": 14}, BOUND)
