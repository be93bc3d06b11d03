"""Scripts (EVALSHA, reload on NOSCRIPT), pipelines, key names and error mapping, on a real
Redis. SCRIPT FLUSH would hit everyone sharing the server, so the reload path runs on
scripts the server has never seen (a fresh source each test)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from sysdesign_kit.backends.redis import (
    SCRIPTS,
    KeySpace,
    Script,
    arun_pipeline,
    async_client,
    backend_error,
    call_packed,
    pack,
    parse_redis_url,
    run_pipeline,
    sync_client,
)
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError


def fresh(body: str = "return {KEYS[1], ARGV[1]}") -> Script:
    """A script no server has cached yet."""
    return Script(f"-- {uuid.uuid4()}\n{body}", name="probe")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = sync_client(parse_redis_url(redis_url))
    yield client
    client.close()


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = async_client(parse_redis_url(redis_url))
    yield client
    await client.aclose()


def test_sha_is_computed_locally_and_registered() -> None:
    script = fresh()
    assert len(script.sha) == 40
    assert SCRIPTS[script.sha] is script
    assert script.command(["k"], [1]) == ("EVALSHA", script.sha, 1, "k", 1)


def test_call_reloads_after_noscript(client: redis.Redis, redis_prefix: str) -> None:
    script = fresh()
    assert client.script_exists(script.sha) == [False]
    assert script.call(client, [f"{redis_prefix}:k"], ["v"]) == [f"{redis_prefix}:k".encode(), b"v"]
    # The EVAL cached it: the next call is a plain EVALSHA.
    assert client.script_exists(script.sha) == [True]
    assert script.call(client, ["a"], ["b"]) == [b"a", b"b"]


async def test_acall_reloads_after_noscript(aclient: redis.asyncio.Redis) -> None:
    script = fresh()
    assert await script.acall(aclient, ["a"], ["b"]) == [b"a", b"b"]
    assert await aclient.script_exists(script.sha) == [True]


def test_run_with_bytes_reloads_after_noscript(client: redis.Redis) -> None:
    script = fresh()
    assert script.run(client, [b"k"], [b"v"]) == [b"k", b"v"]
    assert client.script_exists(script.sha) == [True]
    assert script.run(client, [b"k2"], [b"\xff"]) == [b"k2", b"\xff"]


def test_pack_is_resp() -> None:
    assert pack(b"SET", b"k", b"") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"


def test_call_packed_keeps_the_connection_after_an_error_reply(
    client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:p".encode()
    assert call_packed(client, pack(b"SET", key, b"1")) == b"OK"
    with pytest.raises(ResponseError):
        call_packed(client, pack(b"INCRBY", key, b"x"))
    assert call_packed(client, pack(b"INCRBY", key, b"2")) == 3


def test_load_ahead_of_time(client: redis.Redis) -> None:
    script = fresh("return 7")
    script.load(client)
    assert client.evalsha(script.sha, 0) == 7


async def test_aload_ahead_of_time(aclient: redis.asyncio.Redis) -> None:
    script = fresh("return 8")
    await script.aload(aclient)
    assert await aclient.evalsha(script.sha, 0) == 8


def test_script_errors_are_backend_unavailable(client: redis.Redis) -> None:
    script = fresh("return redis.error_reply('boom')")
    with pytest.raises(BackendUnavailable, match="boom") as info:
        script.call(client)
    assert isinstance(info.value.__cause__, ResponseError)


def test_from_package_joins_files_in_order() -> None:
    script = Script.from_package("sysdesign_kit.ratelimit", "lua/one.lua", "lua/gcra.lua")
    assert script.name == "gcra"
    assert script.source.index("redis.call('TIME')") < script.source.index("local tau")


def test_pipeline_reloads_only_the_commands_that_hit_noscript(
    client: redis.Redis, redis_prefix: str
) -> None:
    known, unknown = fresh("return 1"), fresh("return 2")
    known.load(client)
    counter = f"{redis_prefix}:n"
    results = run_pipeline(
        client,
        [known.command(), ("INCR", counter), unknown.command(), ("NOSUCHCOMMAND",)],
    )
    assert results[:3] == [1, 1, 2]
    assert isinstance(results[3], ResponseError)
    assert client.get(counter) == b"1"  # INCR ran exactly once


async def test_async_pipeline_reloads(aclient: redis.asyncio.Redis) -> None:
    script = fresh("return ARGV[1]")
    results = await arun_pipeline(aclient, [script.command([], ["x"]), script.command([], ["y"])])
    assert results == [b"x", b"y"]


def test_unknown_sha_stays_an_error(client: redis.Redis) -> None:
    (result,) = run_pipeline(client, [("EVALSHA", "0" * 40, 0)])
    assert isinstance(result, NoScriptError)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_backend_unavailable() -> None:
    settings = parse_redis_url(f"redis://127.0.0.1:{_closed_port()}/0")
    client = sync_client(settings)
    with pytest.raises(BackendUnavailable, match="script probe failed") as info:
        fresh().call(client)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(BackendUnavailable, match="pipeline"):
        run_pipeline(client, [("PING",)])
    with pytest.raises(BackendUnavailable, match="SCRIPT LOAD"):
        fresh().load(client)
    with pytest.raises(BackendUnavailable, match="script probe"):
        fresh().run(client, [], [])
    client.close()


async def test_unreachable_server_is_backend_unavailable_async() -> None:
    client = async_client(parse_redis_url(f"redis://127.0.0.1:{_closed_port()}/0"))
    with pytest.raises(BackendUnavailable):
        await fresh().acall(client)
    with pytest.raises(BackendUnavailable):
        await arun_pipeline(client, [("PING",)])
    with pytest.raises(BackendUnavailable):
        await fresh().aload(client)
    await client.aclose()


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            redis.ConnectionError("refused"),
            "redis EVALSHA at redis://h:1/0 failed: ConnectionError",
        ),
        (redis.TimeoutError("slow"), "TimeoutError: slow"),
        (redis.BusyLoadingError("loading"), "BusyLoadingError"),
        (ResponseError("ERR x"), "ResponseError: ERR x"),
        (ConnectionResetError(104, "reset"), "ConnectionResetError: [Errno 104] reset"),
        (TimeoutError(), "TimeoutError"),
    ],
)
def test_backend_error_mapping(exc: Exception, text: str) -> None:
    error = backend_error(exc, "EVALSHA", "redis://h:1/0")
    assert isinstance(error, BackendUnavailable)
    assert text in str(error)


@pytest.mark.parametrize(
    ("parts", "tag", "key"),
    [
        (("rl", "g", "100/minute"), "alice", "sdk:rl:g:100/minute:{alice}"),
        # Separators and braces inside parts are escaped: only the caller key is the tag,
        # and different (part, key) pairs never collide.
        (("rl", "g", "a:{x"), "y", "sdk:rl:g:a%3A%7Bx:{y}"),
        (("rl", "g", "a"), "x:{y", "sdk:rl:g:a:{x:{y}"),
        (("rl", "g", "50%"), "k", "sdk:rl:g:50%25:{k}"),
    ],
)
def test_key_names(parts: tuple[str, ...], tag: str, key: str) -> None:
    assert KeySpace().key(*parts, tag=tag) == key
    assert KeySpace().head(*parts) + tag + "}" == key


def test_one_caller_key_is_one_cluster_slot() -> None:
    keys = KeySpace()
    slots = {key_slot(keys.key("rl", alg, "p", tag="alice").encode()) for alg in "gsf"}
    assert len(slots) == 1
    # A prefix holding a {tag} pins every key of the space to one slot.
    pinned = KeySpace("{app}")
    assert key_slot(pinned.key("rl", "g", "p", tag="alice").encode()) == key_slot(
        pinned.key("rl", "s", "q", tag="bob").encode()
    )


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 101, "tab\t"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        KeySpace(prefix)
