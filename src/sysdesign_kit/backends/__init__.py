"""Shared plumbing for talking to Redis (and later etcd); knows no component.

``sysdesign_kit.backends.redis`` (needs the ``redis`` extra, so it is not imported here):

- `parse_redis_url` -> `RedisSettings` for ``redis://``, ``rediss://`` and ``unix://`` URLs,
  and `sync_client` / `async_client` / `async_connection_factory` with short timeouts
  (`DEFAULT_TIMEOUT`, 0.25 s) and one immediate retry on a broken connection;
- `Script`: Lua run by SHA1 computed locally, re-sent as EVAL once on NOSCRIPT, sync or
  async; `SCRIPTS`, the registry by SHA that `run_pipeline` / `arun_pipeline` use to reload
  scripts inside a pipeline;
- `KeySpace`: ``{prefix}:{part}:...:{{tag}}`` key names whose hash tag is the caller key,
  so multi-key scripts over one caller key are Cluster-safe;
- `backend_error` and `REDIS_ERRORS`: every driver failure becomes `BackendUnavailable`,
  the driver's exception chained as ``__cause__``.
"""

__all__: list[str] = []
