"""Lua scripts run by SHA1 (re-sent on NOSCRIPT), pipelines, and packed commands."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from functools import partial
from importlib import resources
from typing import Any, Protocol

import redis
from redis.exceptions import NoScriptError, ResponseError

from sysdesign_kit.backends.redis._connections import Connections
from sysdesign_kit.backends.redis._errors import REDIS_ERRORS, backend_error

__all__ = [
    "SCRIPTS",
    "AsyncCommands",
    "Commands",
    "Script",
    "arun_pipeline",
    "call_packed",
    "pack",
    "run_pipeline",
]


class Commands(Protocol):
    """What scripts need of a blocking client: ``redis.Redis`` (typed for mypy)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and return its parsed reply."""
        ...

    def pipeline(self, transaction: bool = ...) -> Any:
        """A command buffer sent in one round trip."""
        ...


class AsyncCommands(Protocol):
    """What scripts need of an asyncio client: ``redis.asyncio.Redis`` (typed for mypy)."""

    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]:
        """Send one command and return its parsed reply."""
        ...

    def pipeline(self, transaction: bool = ...) -> Any:
        """A command buffer sent in one round trip."""
        ...


def pack(*args: bytes) -> bytes:
    """One command in RESP, the Redis wire format; every argument already bytes."""
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])


def call_packed(client: redis.Redis, command: bytes) -> Any:
    """Send one `pack`-ed command on a pooled connection of ``client``; return the reply.

    What ``execute_command`` does on top of this (argument encoding, retry wrappers, metrics
    hooks) costs about as much as a local round trip. Kept: the pool and its check that a
    connection is sound before use, and the socket timeout.

    Raises:
        ResponseError: the server answered with an error (the connection stays usable).
        redis.RedisError, OSError: the connection failed; it is closed.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([command], check_health=False)  # type: ignore[no-untyped-call]
        return conn.read_response()
    except ResponseError:
        raise
    except BaseException:
        # It may be half way through a reply: never hand it out again as is.
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)


#: Every `Script` made in this process, by SHA1: how a pipeline finds the source to re-send
#: after NOSCRIPT.
SCRIPTS: dict[str, Script] = {}


class Script:
    """A Lua script run by SHA1, with its source at hand for when the server lost it.

    The SHA is computed locally, so the first call costs no SCRIPT LOAD. When Redis answers
    NOSCRIPT (restart, failover, SCRIPT FLUSH) the call is repeated once as EVAL, which runs
    the script and caches it again.

    Args:
        source: the Lua text.
        name: a short name for messages.
    """

    __slots__ = ("name", "sha", "sha_bytes", "source")

    def __init__(self, source: str, *, name: str = "script") -> None:
        self.source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.sha_bytes = self.sha.encode()
        SCRIPTS.setdefault(self.sha, self)

    @classmethod
    def from_package(cls, package: str, *files: str, name: str | None = None) -> Script:
        """A script made of package data files, joined in order (shared helpers first).

        Args:
            package: the package holding the files, e.g. ``"sysdesign_kit.ratelimit.lua"``.
            files: file names inside it.
            name: defaults to the last file's stem.
        """
        root = resources.files(package)
        source = "\n".join(root.joinpath(file).read_text("utf-8") for file in files)
        return cls(source, name=name or files[-1].rsplit("/", 1)[-1].rsplit(".", 1)[0])

    def __repr__(self) -> str:
        return f"Script(name={self.name!r}, sha={self.sha[:12]!r})"

    def run(
        self,
        client: redis.Redis | Connections,
        keys: Sequence[bytes],
        args: Sequence[bytes],
    ) -> Any:
        """`call` for arguments already encoded as bytes, through `call_packed` or, given
        `Connections`, their ``call``.

        Raises:
            BackendUnavailable: the server failed, timed out or the script raised an error.
        """
        numkeys = b"%d" % len(keys)
        send = client.call if isinstance(client, Connections) else partial(call_packed, client)
        try:
            try:
                return send(pack(b"EVALSHA", self.sha_bytes, numkeys, *keys, *args))
            except NoScriptError:
                source = self.source.encode("utf-8")
                return send(pack(b"EVAL", source, numkeys, *keys, *args))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"script {self.name}") from exc

    def command(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> tuple[Any, ...]:
        """The EVALSHA command tuple, for `run_pipeline` or ``execute_command(*cmd)``."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def call(self, client: Commands, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        """Run the script (blocking).

        Raises:
            BackendUnavailable: the server failed, timed out or the script raised an error.
        """
        try:
            try:
                return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return client.execute_command("EVAL", self.source, len(keys), *keys, *args)
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"script {self.name}") from exc

    async def acall(
        self, client: AsyncCommands, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> Any:
        """Run the script.

        Raises:
            BackendUnavailable: the server failed, timed out or the script raised an error.
        """
        try:
            try:
                return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"script {self.name}") from exc

    def load(self, client: Commands) -> None:
        """SCRIPT LOAD ahead of time (optional: calls load on demand)."""
        try:
            client.execute_command("SCRIPT LOAD", self.source)
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"SCRIPT LOAD {self.name}") from exc

    async def aload(self, client: AsyncCommands) -> None:
        """SCRIPT LOAD ahead of time (optional: calls load on demand)."""
        try:
            await client.execute_command("SCRIPT LOAD", self.source)
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"SCRIPT LOAD {self.name}") from exc


def _as_eval(command: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The EVAL twin of an EVALSHA command whose script this process knows."""
    if command and command[0] == "EVALSHA":
        script = SCRIPTS.get(command[1])
        if script is not None:
            return ("EVAL", script.source, *command[2:])
    return None


def _retries(commands: Sequence[tuple[Any, ...]], results: list[Any]) -> list[int]:
    return [
        i
        for i, result in enumerate(results)
        if isinstance(result, NoScriptError) and _as_eval(commands[i]) is not None
    ]


def run_pipeline(client: Commands, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send commands in one round trip (no transaction); EVALSHA that hit NOSCRIPT are
    re-sent as EVAL once. A command's error is returned in its place, not raised.

    Raises:
        BackendUnavailable: the connection failed or timed out.
    """
    try:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results: list[Any] = pipe.execute(raise_on_error=False)
        again = _retries(commands, results)
        if again:
            pipe = client.pipeline(transaction=False)
            for i in again:
                pipe.execute_command(*_as_eval(commands[i]))  # type: ignore[misc]
            for i, result in zip(again, pipe.execute(raise_on_error=False), strict=True):
                results[i] = result
    except REDIS_ERRORS as exc:
        raise backend_error(exc, "pipeline") from exc
    return results


async def arun_pipeline(client: AsyncCommands, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Async `run_pipeline`."""
    try:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        again = _retries(commands, results)
        if again:
            pipe = client.pipeline(transaction=False)
            for i in again:
                pipe.execute_command(*_as_eval(commands[i]))  # type: ignore[misc]
            for i, result in zip(again, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = result
    except REDIS_ERRORS as exc:
        raise backend_error(exc, "pipeline") from exc
    return results
