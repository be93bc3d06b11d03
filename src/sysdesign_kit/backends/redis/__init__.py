"""Redis plumbing shared by every component: URLs, clients, scripts, key names, errors.

Nothing here knows about rate limits or breakers. A component:

- turns a URL into settings and clients (`parse_redis_url`, `sync_client`, `async_client`):
  short timeouts by default so a slow Redis degrades a request instead of hanging it, and
  one immediate retry on a broken connection only (redis-py's default retries with backoff
  for seconds);
- runs its Lua through a `Script` (EVALSHA first; on NOSCRIPT, EVAL once, which also caches
  the script again on the server), on hot paths with pre-encoded arguments (`Script.run`,
  `call_packed`) and, for blocking calls, its own idle connections (`Connections`);
- names its keys with a `KeySpace` so all keys of one caller key share a ``{hash tag}``
  (multi-key scripts over them are Cluster-safe);
- turns any driver failure into `BackendUnavailable` with `backend_error`.
"""

from sysdesign_kit.backends.redis._connections import Connections
from sysdesign_kit.backends.redis._errors import REDIS_ERRORS, backend_error
from sysdesign_kit.backends.redis._keys import KeySpace
from sysdesign_kit.backends.redis._scripts import (
    SCRIPTS,
    AsyncCommands,
    Commands,
    Script,
    arun_pipeline,
    call_packed,
    pack,
    run_pipeline,
)
from sysdesign_kit.backends.redis._settings import (
    DEFAULT_TIMEOUT,
    RedisSettings,
    async_client,
    async_connection_factory,
    parse_redis_url,
    sync_client,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "REDIS_ERRORS",
    "SCRIPTS",
    "AsyncCommands",
    "Commands",
    "Connections",
    "KeySpace",
    "RedisSettings",
    "Script",
    "arun_pipeline",
    "async_client",
    "async_connection_factory",
    "backend_error",
    "call_packed",
    "pack",
    "parse_redis_url",
    "run_pipeline",
    "sync_client",
]
