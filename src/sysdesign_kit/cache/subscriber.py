"""`Subscriber`: one daemon thread listening on one Redis pub/sub channel, and saying when
it is (and is no longer) sure to hear every message.

What `TwoLevelBackend` uses to receive invalidations. redis-py's blocking ``PubSub`` serves
sync and asyncio users alike, since the thread is the only one to touch it.

A subscription is *confirmed* when Redis answers the ``SUBSCRIBE``; from then on every
message published on the channel reaches ``on_message``, in order, until the subscription
is *lost*: the connection fails (refused, reset, timed out), or goes quiet (no confirmation,
or no reply to the ``PING`` sent every ``heartbeat`` seconds, within ``heartbeat`` seconds).
Each change is reported through ``on_state(True | False)``; messages published between a
loss and the next confirmation are never delivered, which is why the owner is told. When
redis-py reconnects on its own and subscribes again, the new confirmation is reported as
``on_state(True)`` again (messages may have been missed in between). After a loss the
thread subscribes again, 50 ms later at first, backing off to 1 s.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.client

from sysdesign_kit.backends.redis import REDIS_ERRORS

__all__ = ["Subscriber"]

_log = logging.getLogger("sysdesign_kit.cache")

#: How often the thread wakes to check for `stop` and the heartbeat (seconds).
_POLL = 0.05
#: The longest wait between two attempts to subscribe again (seconds).
_MAX_BACKOFF = 1.0


class _NoAnswer(Exception):
    """The subscription went quiet: no confirmation or no PONG in time."""


#: What ends one subscription (the thread then starts another).
_LOST: tuple[type[Exception], ...] = (*REDIS_ERRORS, _NoAnswer)


class Subscriber:
    """Listens on ``channel`` through ``client`` on a daemon thread.

    Args:
        client: the blocking client whose pool gives the subscription its connection.
        channel: the channel name.
        on_message: called on the thread with each message's bytes.
        on_state: called on the thread with True when a subscription is confirmed, False
            when it is lost (and once more when stopped).
        heartbeat: seconds between PINGs, and how long a confirmation or PONG may take.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: bytes,
        *,
        on_message: Callable[[bytes], None],
        on_state: Callable[[bool], None],
        heartbeat: float,
    ) -> None:
        self.client = client
        self.channel = channel
        self.on_message = on_message
        self.on_state = on_state
        self.heartbeat = heartbeat
        self.subscribed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        """Whether the thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (nothing if it runs)."""
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop,),
                name=f"sysdesign-kit-subscriber:{self.channel.decode(errors='replace')}",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        backoff = _POLL
        while not stop.is_set():
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
            try:
                self._listen(pubsub, stop)
            except _LOST as exc:
                level = logging.WARNING if self.subscribed else logging.DEBUG
                _log.log(level, "subscription to %r lost: %r", self.channel, exc)
            except Exception:  # a bug here must not leave the owner believing it hears all
                _log.exception("subscriber of %r failed", self.channel)
            finally:
                if self.subscribed:
                    backoff = _POLL
                self._set(False)
                with contextlib.suppress(*REDIS_ERRORS):
                    pubsub.close()
            stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _listen(self, pubsub: redis.client.PubSub, stop: threading.Event) -> None:
        pubsub.subscribe(self.channel)
        now = time.monotonic()
        # Until confirmed: the deadline for the confirmation; then: for the PONG asked for.
        deadline: float | None = now + self.heartbeat
        next_ping = now + self.heartbeat
        while not stop.is_set():
            message = pubsub.get_message(timeout=_POLL)
            if message is not None:
                kind = message["type"]
                if kind == "message":
                    self.on_message(message["data"])
                elif kind == "subscribe":
                    # The first confirmation, or redis-py reconnected and subscribed again
                    # by itself (messages may have been missed before it).
                    self._set(True)
                    deadline = None
                elif kind == "pong":
                    deadline = None
            now = time.monotonic()
            if deadline is not None and now > deadline:
                what = "PONG" if self.subscribed else "subscription confirmation"
                raise _NoAnswer(f"no {what} within {self.heartbeat} s")
            if self.subscribed and now >= next_ping:
                pubsub.ping()
                next_ping = now + self.heartbeat
                if deadline is None:
                    deadline = now + self.heartbeat

    def _set(self, subscribed: bool) -> None:
        self.subscribed = subscribed
        self.on_state(subscribed)
