"""Circuit-breaker state shared through Redis: ``CircuitBreaker(name, shared=...)``.

``RedisBreakerState.from_url("redis://...")`` is the connection, the script and the failure
policy that breakers of every process share; passing it as ``shared=`` to a
`CircuitBreaker` (or as a `BreakerRegistry` default) makes breakers of the same name in all
those processes see one state. What a breaker does with it (local windows, shared OPEN
state, trials admitted across processes) is in `sysdesign_kit.breaker.redis_shell`; the
script and its pure twin are ``lua/shared.lua`` and `sysdesign_kit.breaker.redis_rules`.

Redis is only ever reached from a small pool of worker threads of this object, or from the
calling thread when a call must wait for a trial permit; never once per call. When Redis
fails or is slow (``socket_timeout``, 0.25 s by default), breakers keep working on their own
state, each publishes one `BackendFailure` (``outcome="local"``) per burst of failures, and
Redis is tried again ``retry_interval`` seconds later.

Needs Redis >= 5 (a script that reads ``TIME`` before writing). Keys:
``{prefix}:cb:{{name}}``, one hash per breaker name, expiring when left alone.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from sysdesign_kit.backends.redis import (
    Connections,
    KeySpace,
    RedisSettings,
    Script,
    parse_redis_url,
    sync_client,
)
from sysdesign_kit.breaker.redis_rules import SharedRules, SharedView, parse_reply
from sysdesign_kit.breaker.state import BreakerPolicy
from sysdesign_kit.breaker.windows import CountWindow, TimeWindow
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError

if TYPE_CHECKING:
    from sysdesign_kit.breaker.breaker import CircuitBreaker
    from sysdesign_kit.breaker.redis_shell import SharedCircuitBreaker

__all__ = ["SHARED_SCRIPT", "RedisBreakerState", "SharedView"]

_log = logging.getLogger("sysdesign_kit.breaker")
T = TypeVar("T")

#: The one script every shared-state operation runs (see `redis_rules`).
SHARED_SCRIPT = Script(
    (resources.files("sysdesign_kit.breaker") / "lua" / "shared.lua").read_text("utf-8"),
    name="breaker",
)

_OPTIONS = frozenset(
    {
        "prefix",
        "flush_interval",
        "retry_interval",
        "trial_lease",
        "ttl",
        "window",
        "server_time",
        "clock",
        "workers",
    }
)
_SERVER_TIME = b""

# Every live state, so a forked child drops the worker threads it did not inherit.
_LIVE: weakref.WeakSet[RedisBreakerState] = weakref.WeakSet()


def _forget_workers() -> None:
    for state in list(_LIVE):
        state._executor = None
        state._futures = set()
        state._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_workers)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be > 0 and finite seconds, got {value!r}")
    return float(value)


class RedisBreakerState:
    """Where breakers of many processes keep their shared state: a Redis server.

    Args:
        settings: where to connect (see `parse_redis_url`); default ``localhost:6379/0``.
        client: a ready blocking client instead of one made from ``settings`` (it is not
            closed by `close`).
        prefix: key namespace (see `KeySpace`); keys are ``{prefix}:cb:{{name}}``.
        flush_interval: seconds between a process's window flushes and its checks of the
            shared state (default 1.0): the bound on how stale a process's view can be.
        retry_interval: seconds to work locally after Redis failed before trying it again
            (default 2.0).
        trial_lease: seconds after which a shared half-open phase whose trials never
            reported (their process died) starts again (default 30.0).
        ttl: seconds a breaker's hash lives once nobody writes it (default 3600; at least
            the shared window; an OPEN hash lives that long after its open time).
        window: the shared window's shape, a `TimeWindow`; default: the breaker's own window
            when it is a time window, else ``TimeWindow(60, buckets=10)``.
        server_time: ``False`` runs the shared clock on ``clock`` instead of Redis TIME.
            For tests: processes on different machines would each bring their own time.
        clock: the local monotonic clock (retry backoff; the shared clock without
            ``server_time``).
        workers: threads that talk to Redis in the background (default 2).

    Raises:
        ConfigurationError: a value is out of range or of the wrong kind.
    """

    kind = "redis"

    def __init__(
        self,
        settings: RedisSettings | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = "sdk",
        flush_interval: float = 1.0,
        retry_interval: float = 2.0,
        trial_lease: float = 30.0,
        ttl: float = 3600.0,
        window: TimeWindow | None = None,
        server_time: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        workers: int = 2,
    ) -> None:
        self.flush_interval = _seconds("flush_interval", flush_interval)
        self.retry_interval = _seconds("retry_interval", retry_interval)
        self.trial_lease = _seconds("trial_lease", trial_lease)
        self.ttl = _seconds("ttl", ttl)
        if window is not None and not isinstance(window, TimeWindow):
            raise ConfigurationError(
                f"the shared window must be a TimeWindow (counts from many processes are "
                f"added per time bucket), got {window!r}"
            )
        if type(workers) is not int or workers < 1:
            raise ConfigurationError(f"workers must be an int >= 1, got {workers!r}")
        if not isinstance(server_time, bool):
            raise ConfigurationError(f"server_time must be a bool, got {server_time!r}")
        self.window = window
        self.settings = settings or RedisSettings()
        self.keys = KeySpace(prefix)
        self.clock = clock
        self.server_time = server_time
        self.workers = workers
        self._owns_client = client is None
        self.client: redis.Redis = client if client is not None else sync_client(self.settings)
        self.connections = Connections(self.client)
        self._executor: ThreadPoolExecutor | None = None
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()  # worker start and failure bookkeeping, never per call
        #: Failure bursts so far; a breaker reports each burst once.
        self.burst = 0
        #: Whether the last attempt failed (breakers work locally until `down_until`).
        self.failing = False
        self.down_until = -math.inf
        #: The error that started the current burst.
        self.error = ""
        self.closed = False
        _LIVE.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBreakerState:
        """A state for ``redis://``, ``rediss://`` or ``unix://`` URLs.

        ``options`` are this class's keyword arguments plus connection overrides such as
        ``socket_timeout=0.1`` (see `parse_redis_url`).

        Raises:
            ConfigurationError: a malformed URL or an unknown or invalid option.
        """
        own = {name: options.pop(name) for name in list(options) if name in _OPTIONS}
        return cls(parse_redis_url(url, **options), **own)

    def __repr__(self) -> str:
        return f"RedisBreakerState({self.settings.location!r}, prefix={self.keys.prefix!r})"

    # -- what a breaker asks -----------------------------------------------------------------

    def key(self, name: str) -> bytes:
        """The Redis key of breaker ``name``."""
        return self.keys.key("cb", tag=name).encode("utf-8")

    def rules(self, window: CountWindow | TimeWindow, policy: BreakerPolicy) -> SharedRules:
        """The script's view of a breaker with this local window and policy."""
        shared = self.window
        if shared is None:
            shared = window if isinstance(window, TimeWindow) else TimeWindow(60.0, 10)
        return SharedRules(
            policy,
            width=shared.seconds / shared.buckets,
            buckets=shared.buckets,
            lease=self.trial_lease,
            ttl=max(self.ttl, float(shared.seconds)),
        )

    def call(
        self,
        key: bytes,
        op: str,
        epoch: int | None,
        counts: tuple[int, int, int],
        args: tuple[bytes, ...],
    ) -> SharedView:
        """Run one operation of the script (blocking; one round trip).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered something else.
        """
        now = _SERVER_TIME if self.server_time else repr(self.clock.monotonic()).encode()
        argv = (
            op.encode(),
            now,
            b"" if epoch is None else b"%d" % epoch,
            b"%d" % counts[0],
            b"%d" % counts[1],
            b"%d" % counts[2],
            *args,
        )
        reply = SHARED_SCRIPT.run(self.connections, (key,), argv)
        try:
            return parse_reply(reply)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendUnavailable(
                f"redis script breaker at {self.settings.location} answered {reply!r}"
            ) from exc

    def available(self) -> bool:
        """Whether breakers should try Redis now (not closed, not backing off)."""
        return not self.closed and (not self.failing or self.clock.monotonic() >= self.down_until)

    def failed(self, exc: BackendUnavailable) -> None:
        """Redis failed: work locally for `retry_interval`; a new burst if it had recovered."""
        now = self.clock.monotonic()
        with self._lock:
            if not self.failing:
                self.failing = True
                self.burst += 1
                self.error = f"{type(exc.__cause__ or exc).__name__}: {exc}"
            self.down_until = now + self.retry_interval

    def recovered(self) -> None:
        """Redis answered: the burst of failures (if any) is over."""
        if self.failing:
            with self._lock:
                self.failing = False

    # -- the workers -------------------------------------------------------------------------

    def submit(self, job: Callable[[], object]) -> bool:
        """Run ``job`` on a worker thread (its errors are logged); False if it cannot run."""
        return self.submit_call(job, guarded=True) is not None

    def submit_call(self, fn: Callable[[], T], *, guarded: bool = False) -> Future[T] | None:
        """Run ``fn`` on a worker thread; its future, or None when the workers are gone."""
        if self.closed:
            return None
        executor = self._executor
        if executor is None:
            with self._lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="sysdesign-breaker-redis"
                    )
        try:
            future = executor.submit(_guard, fn) if guarded else executor.submit(fn)
        except RuntimeError:  # shut down (closed, or the interpreter is exiting)
            return None
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._done)
        return future  # type: ignore[return-value]

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until no background work is left (jobs that start more jobs included).

        For tests and orderly shutdowns; the breakers never wait for it.

        Raises:
            TimeoutError: work is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._futures)
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} shared-state jobs still running")
            concurrent.futures.wait(pending, timeout=left)

    # -- operators -------------------------------------------------------------------------

    def peek(self, breaker: CircuitBreaker) -> SharedView:
        """The shared state of ``breaker``'s name as Redis holds it (blocking).

        Raises:
            ConfigurationError: ``breaker`` does not share its state through this object.
            BackendUnavailable: Redis failed.
        """
        return self._shell(breaker).peek_shared()

    def sync(self, breaker: CircuitBreaker) -> SharedView | None:
        """Flush ``breaker``'s window and take on the shared state now (blocking).

        Returns:
            The shared state, or None when Redis failed (the breaker then works locally).

        Raises:
            ConfigurationError: ``breaker`` does not share its state through this object.
        """
        return self._shell(breaker).sync_shared()

    def _shell(self, breaker: CircuitBreaker) -> SharedCircuitBreaker:
        from sysdesign_kit.breaker.redis_shell import SharedCircuitBreaker

        if not isinstance(breaker, SharedCircuitBreaker) or breaker.shared is not self:
            raise ConfigurationError(f"breaker {breaker.name!r} does not share its state here")
        return breaker

    def close(self) -> None:
        """Stop the workers (finishing their jobs) and close the client this object made.

        Breakers using it afterwards work locally, without events.
        """
        self.closed = True
        executor = self._executor
        if executor is not None:
            executor.shutdown(wait=True)
        self.connections.close()
        if self._owns_client:
            self.client.close()


def _guard(job: Callable[[], object]) -> None:
    try:
        job()
    except Exception:  # a bug, not a Redis failure (those are handled where they happen)
        _log.exception("circuit breaker: shared-state job failed")
