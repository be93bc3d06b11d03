"""`Connections`: the blocking hot path's own idle connections, on a real Redis."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ResponseError

from sysdesign_kit.backends.redis import Connections, Script, pack, parse_redis_url, sync_client


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = sync_client(parse_redis_url(redis_url))
    yield client
    client.close()


@pytest.fixture
def connections(client: redis.Redis) -> Iterator[Connections]:
    connections = Connections(client)
    yield connections
    connections.close()


def client_id(connections: Connections) -> int:
    return int(connections.call(pack(b"CLIENT", b"ID")))


def test_one_caller_reuses_one_connection(connections: Connections) -> None:
    ids = {client_id(connections) for _ in range(5)}
    assert len(ids) == 1
    assert len(connections.idle) == 1


def test_an_error_reply_keeps_the_connection(connections: Connections, redis_prefix: str) -> None:
    key = f"{redis_prefix}:n".encode()
    first = client_id(connections)
    connections.call(pack(b"SET", key, b"x"))
    with pytest.raises(ResponseError):
        connections.call(pack(b"INCR", key))
    assert client_id(connections) == first


def test_a_connection_closed_while_idle_is_replaced_unseen(
    connections: Connections, client: redis.Redis
) -> None:
    first = client_id(connections)
    client.client_kill_filter(_id=str(first))  # as a restart or an idle timeout would
    assert connections.call(pack(b"PING")) == b"PONG"
    assert client_id(connections) != first


def test_a_connection_that_timed_out_is_never_reused(redis_url: str, redis_prefix: str) -> None:
    client = sync_client(parse_redis_url(redis_url, socket_timeout=0.05))
    connections = Connections(client)
    key = f"{redis_prefix}:empty".encode()
    try:
        # The reply (nil, 0.2 s later) would answer the next command if the connection
        # were handed out again.
        with pytest.raises(redis.TimeoutError):
            connections.call(pack(b"BLPOP", key, b"0.2"))
        assert connections.idle == []
        assert connections.call(pack(b"ECHO", b"next")) == b"next"
    finally:
        connections.close()
        client.close()


def test_an_unreachable_server_raises_and_keeps_nothing() -> None:
    client = sync_client(parse_redis_url("redis://127.0.0.1:1/0"))
    connections = Connections(client)
    with pytest.raises(redis.ConnectionError):
        connections.call(pack(b"PING"))
    assert connections.idle == []
    client.close()


def test_threads_share_it(connections: Connections) -> None:
    errors: list[str] = []

    def echo(name: bytes) -> None:
        for i in range(100):
            word = b"%s-%d" % (name, i)
            reply = connections.call(pack(b"ECHO", word))
            if reply != word:
                errors.append(f"{word!r} got {reply!r}")

    threads = [threading.Thread(target=echo, args=(b"t%d" % n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 1 <= len(connections.idle) <= 4


def test_a_forked_child_uses_connections_of_its_own(connections: Connections) -> None:
    parent = client_id(connections)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's result is its exit status)
        ok = connections.idle == [] and client_id(connections) != parent
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client_id(connections) == parent  # the parent's connection is untouched


def test_close_gives_connections_back(client: redis.Redis) -> None:
    connections = Connections(client)
    connections.call(pack(b"PING"))
    connections.close()
    assert connections.idle == []
    assert len(client.connection_pool._available_connections) == 1  # type: ignore[attr-defined]


def test_scripts_run_on_it(connections: Connections) -> None:
    script = Script("return ARGV[1]", name="echo")
    assert script.run(connections, [], [b"v"]) == b"v"
