"""``lua/read.lua`` and ``lua/write.lua`` against their pure-Python twin ``redis_twin``, on a
real Redis.

Random programs of writes (random tags, including repeated ones), reads, deletes, namespace
bumps and tag invalidations, over a few namespaces, keys and tags, some with separator and
brace characters. After every step the scripts' reply must equal the twin's, and every key
the program touches must hold exactly what the twin holds. Writes also set the PX TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sysdesign_kit.cache import redis_twin
from sysdesign_kit.cache.redis import RedisBackend

pytestmark = pytest.mark.redis

TWIN = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

NAMESPACES = st.sampled_from(["ns", "other", "a:b", "{x}"])
KEYS = st.sampled_from(["k", "k2", "a:b", "}{"])
TAGS = st.sampled_from(["t1", "t2", "t:3", "{t}"])

write = st.tuples(st.just("set"), NAMESPACES, KEYS, st.binary(max_size=20), st.lists(TAGS))
read = st.tuples(st.just("get"), NAMESPACES, KEYS)
delete = st.tuples(st.just("delete"), NAMESPACES, KEYS)
bump = st.tuples(st.just("bump"), NAMESPACES)
invalidate = st.tuples(st.just("invalidate"), st.lists(TAGS, min_size=1))
programs = st.lists(st.one_of(write, read, delete, bump, invalidate), max_size=30)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    yield client
    client.close()


def snapshot(client: redis.Redis, names: set[bytes]) -> redis_twin.Store:
    store: redis_twin.Store = {}
    for name in names:
        kind = client.type(name)
        if kind == b"string":
            store[name] = client.get(name)
        elif kind == b"hash":
            store[name] = client.hgetall(name)
        elif kind == b"list":
            store[name] = client.lrange(name, 0, -1)
    return store


def run_step(backend: RedisBackend, model: redis_twin.Store, step: tuple[Any, ...]) -> None:
    op = step[0]
    if op == "set":
        _, ns, key, data, tags = step
        backend.set(ns, key, data, 60, tags)
        redis_twin.write(model, backend._write_keys(ns, key, tags), data)
    elif op in ("get", "delete"):
        _, ns, key = step
        keys = (backend.entry_key(ns, key), backend.version_key(ns))
        if op == "get":
            assert backend.get(ns, key) == redis_twin.read(model, keys, b"g")
        else:
            assert backend.delete(ns, key) == bool(redis_twin.read(model, keys, b"d"))
    elif op == "bump":
        name = backend.version_key(step[1])
        version = int(model.get(name, b"0")) + 1  # type: ignore[arg-type]
        model[name] = b"%d" % version
        assert backend.bump(step[1]) == version
    else:
        backend.invalidate_tags(step[1])
        for tag in dict.fromkeys(step[1]):
            name = backend.tag_key(tag)
            model[name] = b"%d" % (int(model.get(name, b"0")) + 1)  # type: ignore[arg-type]


@TWIN
@given(program=programs)
def test_scripts_match_the_twin(
    client: redis.Redis, redis_url: str, redis_prefix: str, program: list[tuple[Any, ...]]
) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    existing = list(client.scan_iter(match=f"{redis_prefix}:*", count=1000))
    if existing:
        client.delete(*existing)
    model: redis_twin.Store = {}
    try:
        for step in program:
            run_step(backend, model, step)
            names = set(model) | set(client.scan_iter(match=f"{redis_prefix}:*", count=1000))
            assert snapshot(client, names) == model
        for name, value in model.items():
            if isinstance(value, dict):
                assert 0 < client.pttl(name) <= 60_000
    finally:
        backend.close()


def test_the_twin_raises_on_a_wrong_type() -> None:
    model: redis_twin.Store = {b"e": b"not a hash", b"v": {b"d": b""}}
    with pytest.raises(TypeError):
        redis_twin.read(model, (b"e", b"v"), b"g")
    with pytest.raises(TypeError):
        redis_twin.write(model, (b"x", b"v"), b"data")


# -- the load lock's scripts --------------------------------------------------------------

TOKENS = st.sampled_from([b"a", b"b", b"c"])
LOCK_KEYS = st.sampled_from([("ns", "k"), ("ns", "k2"), ("{x}", "k")])
lock_programs = st.lists(
    st.one_of(
        st.tuples(st.just("lock"), LOCK_KEYS, TOKENS),
        st.tuples(st.just("unlock"), LOCK_KEYS, TOKENS),
        st.tuples(st.just("pop"), LOCK_KEYS),  # a waiter taking its wake-up
        st.tuples(st.just("store"), LOCK_KEYS, st.binary(max_size=8)),  # a holder's write
        st.tuples(st.just("bump"), LOCK_KEYS),
    ),
    max_size=30,
)


@TWIN
@given(program=lock_programs)
def test_lock_scripts_match_the_twin(
    client: redis.Redis, redis_url: str, redis_prefix: str, program: list[tuple[Any, ...]]
) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, lock_ttl=60)
    lock = backend.load_lock
    existing = list(client.scan_iter(match=f"{redis_prefix}:*", count=1000))
    if existing:
        client.delete(*existing)
    model: redis_twin.Store = {}
    try:
        for op, (ns, key), *rest in program:
            lock_key, waiters, wake = lock.keys(ns, key)
            entry = (backend.entry_key(ns, key), backend.version_key(ns))
            if op == "lock":
                left, data = lock.acquire(ns, key, rest[0].decode())
                expected = redis_twin.lock(model, (*entry, lock_key, waiters), rest[0])
                assert (0 if left == 0 else 1, data) == expected
                assert 0 <= left <= 60
            elif op == "unlock":
                woken = lock.release(ns, key, rest[0].decode())
                assert woken == redis_twin.unlock(model, (lock_key, waiters, wake), rest[0])
            elif op == "store":
                run_step(backend, model, ("set", ns, key, rest[0], []))
            elif op == "bump":
                run_step(backend, model, ("bump", ns))
            else:
                queued = model.get(wake)
                popped = queued.pop(0) if isinstance(queued, list) and queued else None
                if isinstance(queued, list) and not queued:
                    del model[wake]
                assert client.lpop(wake) == popped
            names = set(model) | set(client.scan_iter(match=f"{redis_prefix}:*", count=1000))
            assert snapshot(client, names) == model
        for name, value in model.items():
            if not name.startswith(backend.version_key("").split(b":c:")[0] + b":c:v"):
                assert 0 < client.pttl(name) <= 60_000, (name, value)
    finally:
        backend.close()
