"""Automatic batching of async Redis rate-limit decisions (no API change for callers).

With nothing in flight a decision is sent at once, as its own script call: one caller pays
exactly one round trip. While a call is in flight, new decisions queue; the queue goes out
as *one* script call (all keys, each decided on its own, in arrival order) as soon as fewer
than ``max_inflight`` calls are on the wire, so 50 callers waiting at the same moment cost
one round trip instead of 50 and nothing ever waits for a timer.

A caller cancelled while queued is dropped before sending (it is not charged); a batch that
fails hands each waiting caller its own `BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.exceptions import NoScriptError, ResponseError

from sysdesign_kit.backends.redis import Script, backend_error, pack
from sysdesign_kit.errors import BackendUnavailable
from sysdesign_kit.ratelimit.backend import Raw
from sysdesign_kit.ratelimit.redis_wire import Wire

__all__ = ["Lane", "parse_raws"]

_BATCH = b"b"
#: Arguments of one decision to the batch script: code, p, q, cost, unit.
_PER = 5


def parse_raws(reply: bytes) -> list[Raw]:
    """A decision script's reply (four integers per decision) as `Raw` tuples."""
    values = reply.split()
    return [
        (values[i] == b"1", int(values[i + 1]), int(values[i + 2]), int(values[i + 3]))
        for i in range(0, len(values), 4)
    ]


class Lane:
    """Script calls and batched decisions for one event loop, over one `Wire`.

    Args:
        wire: the pipelined connection of this loop.
        script: the decision script for batches (all algorithms).
        now: returns the ``now`` argument: ``b""`` for Redis TIME, else microseconds.
        max_inflight: batched script calls allowed on the wire at once.
        max_batch: most decisions in one script call.
    """

    __slots__ = (
        "_args",
        "_futures",
        "_keys",
        "_max_batch",
        "_max_inflight",
        "_now",
        "_tasks",
        "inflight",
        "loop",
        "script",
        "wire",
    )

    def __init__(
        self,
        wire: Wire,
        script: Script,
        now: Callable[[], bytes],
        *,
        max_inflight: int = 2,
        max_batch: int = 256,
    ) -> None:
        self.wire = wire
        self.script = script
        self.loop = wire.loop
        self.inflight = 0
        self._now = now
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        self._keys: list[bytes] = []
        self._args: list[bytes] = []
        self._futures: list[asyncio.Future[Raw]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(
        self,
        keys: list[bytes] | tuple[bytes, ...],
        args: tuple[bytes, ...],
        script: Script | None = None,
    ) -> bytes:
        """Run a script (the lane's by default) once and return its reply: EVALSHA, or EVAL
        if the server lost it.

        Raises:
            BackendUnavailable: no reply, or the script failed.
        """
        script = script or self.script
        numkeys = b"%d" % len(keys)
        try:
            try:
                command = pack(b"EVALSHA", script.sha_bytes, numkeys, *keys, *args)
                reply = await self.wire.call(command)
            except NoScriptError:
                source = script.source.encode()
                reply = await self.wire.call(pack(b"EVAL", source, numkeys, *keys, *args))
        except ResponseError as exc:
            raise backend_error(exc, f"script {script.name}", self.wire.location) from exc
        return reply  # type: ignore[no-any-return]

    async def decide(
        self, script: Script, key: bytes, one: tuple[bytes, ...], many: tuple[bytes, ...]
    ) -> Raw:
        """Decide one key.

        Sent alone, it runs ``script`` (one that knows its algorithm) with ``one``: (p, q,
        cost[, unit]); batched, the lane's script with ``many``: (algorithm code, p, q, cost,
        unit).
        """
        if not self.inflight:
            self.inflight = 1
            try:
                reply = await self.run((key,), (self._now(), *one), script)
            finally:
                self.inflight -= 1
                if self._futures:
                    self._flush()
            values = reply.split()
            return values[0] == b"1", int(values[1]), int(values[2]), int(values[3])
        future: asyncio.Future[Raw] = self.loop.create_future()
        self._keys.append(key)
        self._args.extend(many)
        self._futures.append(future)
        if len(self._futures) == 1 and self.inflight < self._max_inflight:
            # After the callbacks already due this turn: every caller ready now joins.
            self.loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if not self._futures or self.inflight >= self._max_inflight:
            return
        n = self._max_batch
        keys, args, futures = self._keys[:n], self._args[: _PER * n], self._futures[:n]
        del self._keys[:n], self._args[: _PER * n], self._futures[:n]
        self.inflight += 1
        task = self.loop.create_task(self._send(keys, args, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, keys: list[bytes], args: list[bytes], futures: list[asyncio.Future[Raw]]
    ) -> None:
        try:
            if any(future.done() for future in futures):
                keys, args, futures = _drop_cancelled(keys, args, futures)
                if not futures:
                    return
            reply = await self.run(keys, (_BATCH, self._now(), *args))
            for future, raw in zip(futures, parse_raws(reply), strict=True):
                if not future.done():
                    future.set_result(raw)
        except BackendUnavailable as exc:
            for future in futures:
                if not future.done():
                    # One exception object per caller: tracebacks must not pile up on a
                    # shared instance.
                    error = BackendUnavailable(*exc.args)
                    error.__cause__ = exc.__cause__
                    future.set_exception(error)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            self.inflight -= 1
            if self._futures:
                self._flush()

    async def aclose(self) -> None:
        """Let queued and in-flight decisions finish, then close the wire."""
        while self._tasks or self._futures or self.inflight:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                # A direct call is still on the wire; its end flushes the queue.
                await asyncio.sleep(0.001)
        await self.wire.aclose()


def _drop_cancelled(
    keys: list[bytes], args: list[bytes], futures: list[asyncio.Future[Raw]]
) -> tuple[list[bytes], list[bytes], list[asyncio.Future[Raw]]]:
    kept = [i for i, future in enumerate(futures) if not future.done()]
    return (
        [keys[i] for i in kept],
        [arg for i in kept for arg in args[_PER * i : _PER * i + _PER]],
        [futures[i] for i in kept],
    )
