"""Serialisation: msgpack and JSON round trips, typed values, custom serializers, and the
named errors for values that cannot be stored; corrupted bytes read as a reported miss."""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from sysdesign_kit.cache import Cache, MemoryBackend, Unserializable, ValueTooLarge
from sysdesign_kit.cache.serializers import Envelope, make_codec
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError, InvalidInput
from sysdesign_kit.events import BackendFailure
from tests.cache.conftest import Recorder, make_cache


class Product(msgspec.Struct):
    id: int
    name: str
    added: dt.datetime


@dataclass
class Row:
    id: int
    tags: list[str]


class Pickler:
    """What a user who wants pickle writes (the kit never unpickles on its own)."""

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - a test of a user's own choice


VALUE = {"id": 1, "name": "widget", "price": 9.5, "tags": ["a"], "nested": {"x": None}}
WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize("serializer", ["msgpack", "json", Pickler()])
async def test_round_trip(clock: ManualClock, serializer: Any) -> None:
    cache = make_cache(clock, serializer=serializer)
    await cache.set("k", VALUE)
    assert await cache.get("k") == VALUE
    assert cache.sync.get("k") == VALUE


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
async def test_typed_values_come_back_as_themselves(clock: ManualClock, serializer: str) -> None:
    cache = make_cache(clock, serializer=serializer, value_type=Product)
    await cache.set("k", Product(1, "w", WHEN))
    assert await cache.get("k") == Product(1, "w", WHEN)
    rows = make_cache(clock, serializer=serializer, value_type=list[Row], name="rows")
    await rows.set("k", [Row(1, ["a"])])
    assert await rows.get("k") == [Row(1, ["a"])]


def test_json_is_readable(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, serializer="json", backend=backend)
    cache.sync.set("k", {"a": 1})
    raw = backend.get("test", "k")
    assert raw is not None
    assert raw.startswith(b'[{"a":1},')


def test_custom_serializer_is_used_for_values(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, serializer=Pickler(), backend=backend)
    cache.sync.set("k", {1, 2})  # a set: only pickle keeps it a set
    assert cache.sync.get("k") == {1, 2}
    envelope = msgspec.msgpack.decode(backend.get("test", "k"), type=Envelope[bytes])
    assert pickle.loads(envelope.value) == {1, 2}  # noqa: S301


@pytest.mark.parametrize("serializer", ["msgpack", "json", Pickler()])
async def test_unserializable_values_raise_a_named_error(
    clock: ManualClock, serializer: Any
) -> None:
    cache = make_cache(clock, serializer=serializer)
    with pytest.raises(Unserializable, match="cannot cache a") as caught:
        await cache.set("k", lambda: None)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.key == "k"
    assert caught.value.__cause__ is not None
    with pytest.raises(Unserializable):
        await cache.get_or_load("k2", _async_value(lambda: None))
    assert await cache.get("k") is None


def _async_value(value: Any) -> Any:
    async def load() -> Any:
        return value

    return load


def test_custom_serializer_must_return_bytes(clock: ManualClock) -> None:
    class Text:
        def dumps(self, value: Any) -> bytes:
            return str(value)  # type: ignore[return-value]

        def loads(self, data: bytes) -> Any:
            return data

    with pytest.raises(Unserializable, match="returned str"):
        make_cache(clock, serializer=Text()).sync.set("k", 1)


async def test_huge_values_are_refused_by_set(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, max_value_bytes=100)
    with pytest.raises(ValueTooLarge) as caught:
        await cache.set("k", "x" * 200)
    assert caught.value.limit == 100
    assert caught.value.size > 200
    await cache.set("k", "x" * 50)
    assert await cache.get("k") == "x" * 50


async def test_huge_loaded_values_are_returned_not_cached(
    clock: ManualClock, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(clock, recorder, max_value_bytes=100)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "x" * 200

    assert await cache.get_or_load("k", load) == "x" * 200
    assert await cache.get_or_load("k", load) == "x" * 200
    assert calls == 2
    failures = recorder.of(BackendFailure)
    assert [(f.operation, f.outcome) for f in failures] == [("set", "not_cached")] * 2
    assert "returned without caching" in caplog.text
    assert cache.sync.get_or_load("k", lambda: "x" * 200) == "x" * 200


def test_memory_max_bytes_caps_max_value_bytes(clock: ManualClock) -> None:
    cache = Cache("c", backend=MemoryBackend(max_bytes=500, clock=clock))
    assert cache.max_value_bytes == 500


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff\xfe", b"not msgpack at all", msgspec.msgpack.encode([1, 2]), b"\x93\x01"],
)
async def test_corrupted_bytes_are_a_reported_miss(
    clock: ManualClock, recorder: Recorder, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, recorder, backend=backend)
    backend.set("test", "k", garbage, 60)
    assert await cache.get("k", "default") == "default"
    assert await cache.get_or_load("k", _async_value("fresh")) == "fresh"
    assert await cache.get("k") == "fresh"  # the load replaced the bad entry
    decode_failures = [f for f in recorder.of(BackendFailure) if f.operation == "decode"]
    assert len(decode_failures) == 2
    assert decode_failures[0].outcome == "miss"
    assert "does not decode" in caplog.text


def test_corrupted_bytes_through_the_decorator(clock: ManualClock, recorder: Recorder) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, recorder, backend=backend)

    @cache.cached(key="k")
    def load() -> int:
        return 5

    backend.set("test", "k", b"\xc1", 60)
    assert load() == 5
    assert load() == 5
    assert recorder.accessed == ["miss", "hit"]


async def test_a_changed_type_reads_as_a_miss(clock: ManualClock, recorder: Recorder) -> None:
    backend = MemoryBackend(clock=clock)
    old = make_cache(clock, backend=backend)
    await old.set("k", {"id": "not an int"})
    new = make_cache(clock, recorder, backend=backend, value_type=Row)
    assert await new.get("k") is None
    assert [f.operation for f in recorder.of(BackendFailure)] == ["decode"]


def test_custom_loads_failure_is_a_miss(clock: ManualClock) -> None:
    class Broken(Pickler):
        def loads(self, data: bytes) -> Any:
            raise RuntimeError("nope")

    cache = make_cache(clock, serializer=Broken())
    cache.sync.set("k", 1)
    assert cache.sync.get("k", "d") == "d"


@pytest.mark.parametrize(
    ("serializer", "message"),
    [("pickle", "not one of"), (42, "dumps"), (Pickler, "dumps")],
)
def test_bad_serializers(serializer: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cache("c", serializer=serializer)


def test_value_type_msgspec_cannot_decode() -> None:
    with pytest.raises(ConfigurationError, match="cannot be decoded by msgspec"):
        make_codec("msgpack", list[int] | tuple[int, ...])
