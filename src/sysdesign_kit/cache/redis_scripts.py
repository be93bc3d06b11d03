"""The Redis cache's Lua scripts (``lua/*.lua``), loaded once for every module that runs them.

Their pure-Python twin is `sysdesign_kit.cache.redis_twin`.
"""

from __future__ import annotations

from importlib import resources

from sysdesign_kit.backends.redis import Script

__all__ = ["LOCK_SCRIPT", "READ_SCRIPT", "UNLOCK_SCRIPT", "WRITE_SCRIPT"]


def _source(name: str) -> str:
    return (resources.files("sysdesign_kit.cache") / "lua" / f"{name}.lua").read_text("utf-8")


#: Reads or deletes one entry, checking its namespace and tag versions (``lua/read.lua``).
READ_SCRIPT = Script(_source("read"), name="cache read")
#: Stores one entry stamped with the current versions (``lua/write.lua``).
WRITE_SCRIPT = Script(_source("write"), name="cache write")
#: Takes a load lock and reads the entry, or queues the caller: ``lua/lock.lua`` after
#: ``lua/read.lua`` wrapped as the function ``read()`` (its KEYS and ARGV come first).
LOCK_SCRIPT = Script(
    f"local function read()\n{READ_SCRIPT.source}\nend\n{_source('lock')}", name="cache lock"
)
#: Drops a load lock and wakes its waiters (``lua/unlock.lua``).
UNLOCK_SCRIPT = Script(_source("unlock"), name="cache unlock")
