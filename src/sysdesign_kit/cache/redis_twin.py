"""The pure-Python twin of the Redis cache scripts (``lua/read.lua``, ``lua/write.lua``,
``lua/lock.lua``, ``lua/unlock.lua``).

A model of the keys the scripts touch: a dict from key name to bytes (a version counter,
a lock token, a waiter count, as Redis stores them), a dict (an entry hash) or a list (a
wake-up list). Tests run random operations through both the scripts on a real Redis and
these functions, and compare replies and keys. TTLs are left out: the scripts only set them
(checked separately), and the lock's reply is reduced to taken (0) or not (1).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Store", "lock", "read", "unlock", "write"]

#: Key name -> a string value (bytes), a hash (field -> value) or a list.
Store = dict[bytes, bytes | dict[bytes, bytes] | list[bytes]]


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


def lock(store: Store, keys: Sequence[bytes], token: bytes) -> tuple[int, bytes | None]:
    """``lock.lua``, ``keys`` = (entry, namespace version, lock, waiter count): when
    ``token`` takes the free lock, (0, what `read` answers for the entry); else (1, None)
    (the script answers the milliseconds the lock has left) and one more waiter counted."""
    if keys[2] not in store:
        store[keys[2]] = token
        found = read(store, keys[:2], b"g")
        return 0, found if isinstance(found, bytes) else None
    store[keys[3]] = b"%d" % (int(_string(store, keys[3])) + 1)
    return 1, None


def unlock(store: Store, keys: Sequence[bytes], token: bytes) -> int:
    """``unlock.lua``: drop the lock if ``token`` holds it; push one element per waiter
    counted in ``keys[1]`` onto ``keys[2]``; the number of waiters woken."""
    if store.get(keys[0]) == token:
        del store[keys[0]]
    waiting = int(_string(store, keys[1]))
    if waiting > 0:
        del store[keys[1]]
        wake = store.setdefault(keys[2], [])
        if not isinstance(wake, list):
            raise TypeError("WRONGTYPE")
        wake.extend([b"1"] * waiting)
    return waiting
