"""``@cached(...)`` (also ``@cache.cached(...)``) for sync and async functions.

::

    @cached(ttl=3600, key="product:{product_id}", tags=["product:{product_id}"])
    async def get_product(product_id: int) -> Product: ...

Everything is prepared at decoration time: the key template becomes a function with the
decorated function's own parameters (`keys.compile_key`), the return annotation becomes the
decoder's type (so a `msgspec.Struct` or dataclass comes back as itself), and the freshness
settings are merged with the cache's.

A hit on an in-process backend runs inline in the wrapper: build the key, one dict lookup,
decode, one wall-clock read, compare with the entry's expiry (and XFetch's horizon), and
publish an event only if someone listens. Everything else (early refresh, stale windows,
single-flight loading) is on the miss path, in `Cache` / `SyncCache`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from sysdesign_kit.cache.cache import Cache, Site
from sysdesign_kit.cache.keys import KeySpec, compile_key, compile_tags, fit_key
from sysdesign_kit.errors import ConfigurationError

__all__ = ["Decorator", "TagSpec", "cached", "default_cache"]

P = ParamSpec("P")
R = TypeVar("R")

#: What ``tags=`` accepts: templates like ``key=``'s, or a callable given the call's arguments.
TagSpec = str | Sequence[str] | Callable[..., Sequence[str]]

_DEFAULT: Cache | None = None


class Decorator(Protocol):
    """What ``cached(...)`` returns: keeps the decorated function's exact signature."""

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]:
        """Wrap ``func``."""
        ...


def default_cache() -> Cache:
    """The process's default cache (memory, one hour), used by ``@cached`` without ``cache=``."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Cache("default")
    return _DEFAULT


def cached(
    *,
    cache: Cache | None = None,
    key: KeySpec | None = None,
    ttl: float | None = None,
    tags: TagSpec | None = None,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
    negative_ttl: float | None = None,
    early_refresh_beta: float | None = None,
    value_type: Any = None,
) -> Decorator:
    """Cache the decorated function's results (cache-aside, stampede-protected).

    Args:
        cache: where results go (default: `default_cache`).
        key: a template over the parameters (``"product:{product_id}"``, ``"{user.id}"``)
            or a callable given the call's arguments returning the key. Default: the
            function's qualified name and the ``repr`` of every argument.
        ttl, stale_while_revalidate, stale_if_error, negative_ttl, early_refresh_beta:
            override the cache's `CachePolicy` for this function (None: the cache's).
        tags: templates like ``key`` (or a callable) naming the tags each stored result
            carries, for `Cache.invalidate_tags`. Computed only when a result is stored.
        value_type: the type results are decoded as; default: the function's return
            annotation (resolved on first use if it is a forward reference), else ``Any``.

    Returns:
        A decorator keeping the function's signature (sync stays sync, async stays async).

    Raises:
        ConfigurationError: a bad template, a setting out of range, a return type msgspec
            cannot decode, or a generator function.
    """
    if cache is not None and not isinstance(cache, Cache):
        raise ConfigurationError(f"cache= must be a Cache, got {cache!r}")

    def decorate(func: Callable[P, R], /) -> Callable[P, R]:
        if not callable(func):
            raise ConfigurationError(f"@cached: expected a function, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ConfigurationError(
                f"@cached: {func.__qualname__} is a generator function; cache a function "
                "that returns a value"
            )
        target = cache if cache is not None else default_cache()
        policy = target.policy.override(
            ttl=ttl,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            negative_ttl=negative_ttl,
            early_refresh_beta=early_refresh_beta,
        )
        site = _site(target, policy, func, value_type)
        key_of = compile_key(key, func)
        tags_of = compile_tags(tags, func)
        if inspect.iscoroutinefunction(func):
            wrapper = _async(target, site, func, key_of, tags_of)
        else:
            wrapper = _sync(target, site, func, key_of, tags_of)
        return cast(Callable[P, R], wrapper)

    return decorate


def _site(cache: Cache, policy: Any, func: Callable[..., Any], value_type: Any) -> Site:
    if value_type is not None:
        return cache.site(policy, value_type)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # a forward reference not defined yet: resolve on first use

        def resolve() -> Any:
            try:
                return typing.get_type_hints(func).get("return", Any)
            except Exception as exc:
                raise ConfigurationError(
                    f"@cached: cannot resolve the return type of {func.__qualname__} "
                    f"({type(exc).__name__}: {exc}); pass value_type="
                ) from exc

        return cache.site(policy, resolve, lazy=True)
    return cache.site(policy, hints.get("return", Any))


def _async(
    cache: Cache,
    site: Site,
    func: Callable[..., Any],
    key_of: Callable[..., str],
    tags_of: Callable[..., tuple[str, ...]] | None,
) -> Callable[..., Any]:
    fetch = cache._afetch
    tags: Any = tags_of if tags_of is not None else ()
    limit = cache.max_key_length

    if not cache._local and cache._peek is None:

        @functools.wraps(func)
        async def remote(*args: Any, **kwargs: Any) -> Any:
            key = key_of(*args, **kwargs)
            if len(key) > limit:
                key = fit_key(key, limit)
            return await fetch(site, key, func, args, kwargs, tags)

        return remote

    # In memory: the backend's own read; a backend that does I/O but keeps copies in
    # memory: its peek at them (a miss there goes on to the backend through `fetch`).
    lookup = cache._lookup if cache._local or cache._peek is None else cache._peek
    now = cache._time
    events = cache.events
    xwin = site.xwin
    decode = site.decode

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        if len(key) > limit:
            key = fit_key(key, limit)
        raw = lookup(key)
        if raw is not None:
            try:
                envelope = raw if decode is None else decode(raw)
            except Exception:  # reported by the slow path, which decodes it again
                envelope = None
            if envelope is not None and now() + envelope.delta * xwin < envelope.fresh_until:
                if events.listeners:
                    cache._accessed("hit")
                return envelope.value
        return await fetch(site, key, func, args, kwargs, tags)

    return wrapper


def _sync(
    cache: Cache,
    site: Site,
    func: Callable[..., Any],
    key_of: Callable[..., str],
    tags_of: Callable[..., tuple[str, ...]] | None,
) -> Callable[..., Any]:
    fetch = cache.sync._fetch
    tags: Any = tags_of if tags_of is not None else ()
    limit = cache.max_key_length
    lookup = cache._lookup
    now = cache._time
    events = cache.events
    xwin = site.xwin
    decode = site.decode

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        if len(key) > limit:
            key = fit_key(key, limit)
        try:
            raw = lookup(key)
        except Exception:  # a backend failure: the slow path reports it and loads
            raw = None
        if raw is not None:
            try:
                envelope = raw if decode is None else decode(raw)
            except Exception:  # reported by the slow path, which decodes it again
                envelope = None
            if envelope is not None and now() + envelope.delta * xwin < envelope.fresh_until:
                if events.listeners:
                    cache._accessed("hit")
                return envelope.value
        return fetch(site, key, func, args, kwargs, tags)

    return wrapper
