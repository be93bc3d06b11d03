"""How values become bytes: an `Envelope` (the value and its timings) encoded with msgspec.

The envelope is what every backend stores under a key. It carries, besides the value, the
wall-clock times that decide how the entry may be served, so processes sharing a backend
(Redis, next) judge an entry alike:

- ``fresh_until``: served as a hit before this (and refreshed early by XFetch near it);
- ``stale_until``: after ``fresh_until`` and before this, served stale while one caller
  revalidates in the background (``stale-while-revalidate``, RFC 5861);
- ``error_until``: before this, served when the loader fails (``stale-if-error``);
- ``delta``: seconds the last load took (XFetch's Δ);
- ``missing``: a negative entry ("the loader found nothing"); its value is None.

Serializers:

- ``"msgpack"`` (default): the envelope and the value in one msgspec MessagePack message, so
  a hit decodes once. Typed caches (``type=``, or the decorated function's return
  annotation) rebuild dataclasses, `msgspec.Struct`, datetimes, UUIDs... as themselves.
- ``"json"``: the same as JSON text (readable in ``redis-cli``; larger and slower).
- any object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value`` (a `Serializer`):
  its bytes travel inside a MessagePack envelope. This is the only way pickle gets in: the
  kit never unpickles on its own, since whoever can write to a shared backend could then
  run code in every reader.

Every process sharing a namespace must use the same serializer: an entry that does not
decode is treated as a miss (and reported), never as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import msgspec

from sysdesign_kit.errors import ConfigurationError

__all__ = ["SERIALIZERS", "Codec", "Envelope", "Serializer", "make_codec"]

T = TypeVar("T")

#: The serializers known by name.
SERIALIZERS = ("json", "msgpack")

#: What an encoder may raise for a value it cannot represent.
ENCODE_ERRORS = (TypeError, ValueError, OverflowError, msgspec.MsgspecError)


class Envelope(msgspec.Struct, Generic[T], array_like=True, gc=False):
    """One stored entry: the value and the times that govern serving it (wall seconds)."""

    value: T
    fresh_until: float
    stale_until: float
    error_until: float
    delta: float = 0.0
    missing: bool = False


@runtime_checkable
class Serializer(Protocol):
    """A user-supplied value serializer (for example one built on pickle)."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what `dumps` produced."""
        ...


class Codec:
    """Encodes envelopes to bytes and back for one serializer and one value type.

    Attributes:
        name: ``"msgpack"``, ``"json"`` or the custom serializer's class name.
        encode: envelope -> bytes; raises one of ``ENCODE_ERRORS`` (or anything a custom
            serializer raises) for a value it cannot encode.
        decode: bytes -> envelope; raises on bytes it cannot read.
    """

    __slots__ = ("decode", "encode", "name")

    def __init__(
        self,
        name: str,
        encode: Callable[[Envelope[Any]], bytes],
        decode: Callable[[bytes], Envelope[Any]],
    ) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode


def make_codec(serializer: str | Serializer, value_type: Any = Any) -> Codec:
    """The codec for ``serializer`` decoding values as ``value_type``.

    Raises:
        ConfigurationError: an unknown serializer name, an object without ``dumps`` and
            ``loads``, or a ``value_type`` msgspec cannot decode.
    """
    if isinstance(serializer, str):
        module: Any
        if serializer == "msgpack":
            module = msgspec.msgpack
        elif serializer == "json":
            module = msgspec.json
        else:
            raise ConfigurationError(
                f"serializer={serializer!r} is not one of {list(SERIALIZERS)} "
                "(or an object with dumps() and loads())"
            )
        try:
            decoder = module.Decoder(Envelope[value_type])
        except TypeError as exc:
            raise ConfigurationError(
                f"type={value_type!r} cannot be decoded by msgspec: {exc} "
                "(pass type=typing.Any, or a serializer object of your own)"
            ) from None
        return Codec(serializer, module.Encoder().encode, decoder.decode)
    if not isinstance(serializer, Serializer) or isinstance(serializer, type):
        raise ConfigurationError(
            f"serializer must be 'msgpack', 'json' or an object with dumps() and loads(), "
            f"got {serializer!r}"
        )
    return _custom(serializer)


def _custom(serializer: Serializer) -> Codec:
    dumps, loads = serializer.dumps, serializer.loads
    outer_encode = msgspec.msgpack.Encoder().encode
    outer_decode = msgspec.msgpack.Decoder(Envelope[bytes]).decode

    def encode(envelope: Envelope[Any]) -> bytes:
        data = dumps(envelope.value)
        if not isinstance(data, bytes):
            raise TypeError(f"{type(serializer).__name__}.dumps returned {type(data).__name__}")
        return outer_encode(
            Envelope(
                data,
                envelope.fresh_until,
                envelope.stale_until,
                envelope.error_until,
                envelope.delta,
                envelope.missing,
            )
        )

    def decode(raw: bytes) -> Envelope[Any]:
        envelope: Envelope[Any] = outer_decode(raw)
        envelope.value = loads(envelope.value)
        return envelope

    return Codec(type(serializer).__name__, encode, decode)
