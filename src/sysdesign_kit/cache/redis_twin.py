"""The pure-Python twin of the Redis cache scripts (``lua/read.lua``, ``lua/write.lua``).

A model of the keys the scripts touch: a dict from key name to either bytes (a version
counter as Redis stores it) or a dict (an entry hash). Tests run random operations through
both the scripts on a real Redis and these functions, and compare replies and keys.
TTLs are left out: the scripts only set them (checked separately).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Store", "read", "write"]

#: Key name -> a string value (bytes) or a hash (field -> value).
Store = dict[bytes, bytes | dict[bytes, bytes]]


def _string(store: Store, key: bytes) -> bytes:
    value = store.get(key, b"0")
    if not isinstance(value, bytes):
        raise TypeError("WRONGTYPE")
    return value


def write(store: Store, keys: Sequence[bytes], data: bytes) -> int:
    """``write.lua``: replace ``keys[0]`` with an entry stamped with the current versions of
    the namespace (``keys[1]``) and the tags (``keys[2:]``)."""
    store.pop(keys[0], None)
    entry = {b"d": data, b"v": _string(store, keys[1])}
    for tag_key in keys[2:]:
        entry[b"t:" + tag_key] = _string(store, tag_key)
    store[keys[0]] = entry
    return 1


def read(store: Store, keys: Sequence[bytes], op: bytes) -> bytes | int | None:
    """``read.lua``: ``op`` ``b"g"`` returns the live bytes (or None); ``b"d"`` deletes and
    returns 1 if the entry was live, else 0. An outdated entry is removed either way."""
    entry = store.get(keys[0])
    if entry is None:
        return 0 if op == b"d" else None
    if not isinstance(entry, dict):
        raise TypeError("WRONGTYPE")
    version = _string(store, keys[1])
    live = b"d" in entry
    for field, value in entry.items():
        if field == b"v":
            live = live and value == version
        elif field.startswith(b"t:"):
            live = live and _string(store, field[2:]) == value
    if op == b"d":
        del store[keys[0]]
        return 1 if live else 0
    if not live:
        del store[keys[0]]
        return None
    return entry[b"d"]
