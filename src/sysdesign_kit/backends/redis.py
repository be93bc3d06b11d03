"""Redis plumbing shared by every component: URLs, clients, scripts, key names, errors.

Nothing here knows about rate limits or breakers. A component:

- turns a URL into settings and clients (`parse_redis_url`, `sync_client`, `async_client`):
  short timeouts by default so a slow Redis degrades a request instead of hanging it, and
  one immediate retry on a broken connection only (redis-py's default retries with backoff
  for seconds);
- runs its Lua through a `Script` (EVALSHA first; on NOSCRIPT, EVAL once, which also caches
  the script again on the server), on hot paths with pre-encoded arguments (`Script.run`,
  `call_packed`);
- names its keys with a `KeySpace` so all keys of one caller key share a ``{hash tag}``
  (multi-key scripts over them are Cluster-safe);
- turns any driver failure into `BackendUnavailable` with `backend_error`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError

from sysdesign_kit.errors import BackendUnavailable, ConfigurationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "REDIS_ERRORS",
    "SCRIPTS",
    "AsyncCommands",
    "Commands",
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

#: Seconds to connect or to wait for a reply before the backend counts as unavailable.
DEFAULT_TIMEOUT: Final = 0.25

#: What a call to redis-py can raise when the server is unreachable, slow or refuses.
#: (asyncio and builtin timeouts and connection resets are all OSError subclasses.)
REDIS_ERRORS: Final[tuple[type[Exception], ...]] = (redis.RedisError, OSError, EOFError)

_SCHEMES = ("redis", "rediss", "unix")


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


_CERT_REQS = ("none", "optional", "required")


# -- settings and clients ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where and how to connect; made by `parse_redis_url`.

    Attributes:
        scheme: ``redis``, ``rediss`` (TLS) or ``unix``.
        host, port: the TCP address (unused for unix sockets).
        path: the unix socket path (``None`` over TCP).
        db: database index.
        socket_timeout: seconds to wait for a reply.
        socket_connect_timeout: seconds to wait for a connection.
        retries: immediate retries after a broken connection (never after a timeout).
    """

    scheme: str = "redis"
    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    socket_timeout: float = DEFAULT_TIMEOUT
    socket_connect_timeout: float = DEFAULT_TIMEOUT
    health_check_interval: float = 0.0
    max_connections: int | None = None
    client_name: str | None = None
    retries: int = 1
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @property
    def location(self) -> str:
        """The server as a URL without credentials, for messages and logs."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` / ``redis.asyncio.Redis`` (without retry)."""
        kwargs: dict[str, Any] = {
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": self.health_check_interval,
            "max_connections": self.max_connections,
            "client_name": self.client_name,
        }
        if self.path is not None:
            kwargs["unix_socket_path"] = self.path
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        if self.scheme == "rediss":
            kwargs.update(
                ssl=True,
                ssl_cert_reqs=self.ssl_cert_reqs,
                ssl_ca_certs=self.ssl_ca_certs,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_check_hostname=self.ssl_check_hostname,
            )
        return kwargs


def sync_client(settings: RedisSettings) -> redis.Redis:
    """A blocking client with the settings' timeouts and retry policy."""
    retry = redis.retry.Retry(NoBackoff(), settings.retries, (redis.ConnectionError,))
    return redis.Redis(retry=retry, **settings.client_kwargs())


def async_client(settings: RedisSettings) -> redis.asyncio.Redis:
    """An asyncio client with the settings' timeouts and retry policy."""
    retry = redis.asyncio.retry.Retry(NoBackoff(), settings.retries, (redis.ConnectionError,))
    return redis.asyncio.Redis(retry=retry, **settings.client_kwargs())


def async_connection_factory(
    source: RedisSettings | redis.asyncio.Redis,
) -> Callable[[], AbstractConnection]:
    """A maker of single asyncio connections (no pool) with no read timeout of their own.

    For code that bounds its waits itself, such as a pipelined connection that times the
    oldest outstanding reply. TLS, unix sockets, AUTH and SELECT come from ``source``.
    """
    client = source if isinstance(source, redis.asyncio.Redis) else async_client(source)
    pool = client.connection_pool
    connection_class = pool.connection_class
    kwargs = {**pool.connection_kwargs, "socket_timeout": None}
    return lambda: connection_class(**kwargs)


def parse_redis_url(url: str, **overrides: object) -> RedisSettings:
    """Parse ``redis://``, ``rediss://`` or ``unix://`` URLs into `RedisSettings`.

    Forms: ``redis://[[user]:password@]host[:port][/db][?option=value&...]``,
    ``rediss://...`` (TLS), ``unix://[[user]:password@]/path/to/redis.sock[?db=N&...]``.
    Credentials are percent-decoded. Options, in the query or as keyword ``overrides``:
    ``db``, ``socket_timeout``, ``socket_connect_timeout``, ``health_check_interval``,
    ``max_connections``, ``client_name``, ``retries``, ``username``, ``password`` and, for
    ``rediss`` only, ``ssl_cert_reqs`` (none/optional/required), ``ssl_ca_certs``,
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``.

    Raises:
        ConfigurationError: naming the part of the URL (or the option) that is wrong.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis URL must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ConfigurationError(f"Redis URL {_redact(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r}: scheme {scheme!r} is not one of {list(_SCHEMES)}"
        )
    if parts.fragment:
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r}: unexpected '#' fragment (percent-encode a '#' in a "
            "password as %23)"
        )
    values: dict[str, object] = {"scheme": scheme}
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password is not None:
        values["password"] = unquote(parts.password)
    if scheme == "unix":
        if parts.hostname or not parts.path or parts.path == "/":
            raise ConfigurationError(
                f"Redis URL {_redact(url)!r}: path: a unix URL needs an absolute socket path, "
                "as in unix:///run/redis.sock"
            )
        values["path"] = unquote(parts.path)
    else:
        if parts.hostname:
            values["host"] = parts.hostname
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(
                f"Redis URL {_redact(url)!r}: port is not a number in 0..65535"
            ) from None
        if port is not None:
            values["port"] = port
        db_text = parts.path.lstrip("/")
        if db_text:
            values["db"] = _option_db("db (URL path)", db_text)
    seen: set[str] = set()
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in seen:
            raise ConfigurationError(f"Redis URL {_redact(url)!r}: option {name!r} given twice")
        seen.add(name)
        values[name] = _parse_option(url, name, text)
    for name, value in overrides.items():
        values[name] = _parse_option(url, name, value)
    if scheme != "rediss":
        tls_only = sorted(name for name in values if name.startswith("ssl_"))
        if tls_only:
            raise ConfigurationError(
                f"Redis URL {_redact(url)!r}: option {tls_only[0]!r} needs the rediss:// scheme"
            )
    return replace(RedisSettings(), **values)  # type: ignore[arg-type]


def _redact(url: object) -> str:
    """The URL with any password replaced, so errors never print secrets."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return text
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else text


def _option_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound}, got {value!r}"
        )
    return number


def _option_int(name: str, value: object, low: int) -> int:
    number: int | None = None
    if isinstance(value, str):
        text = value.strip()
        number = int(text) if text.isascii() and text.isdigit() else None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None or number < low:
        raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
    return number


def _option_db(name: str, value: object) -> int:
    return _option_int(name, value, 0)


def _option_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def _option_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _option_cert_reqs(name: str, value: object) -> str:
    text = str(value).strip().lower()
    if text not in _CERT_REQS:
        raise ConfigurationError(f"{name} must be one of {list(_CERT_REQS)}, got {value!r}")
    return text


_OPTIONS: dict[str, Callable[[str, object], object]] = {
    "db": _option_db,
    "socket_timeout": _option_seconds,
    "socket_connect_timeout": _option_seconds,
    "health_check_interval": lambda n, v: _option_seconds(n, v, zero_ok=True),
    "max_connections": lambda n, v: _option_int(n, v, 1),
    "retries": lambda n, v: _option_int(n, v, 0),
    "client_name": _option_text,
    "username": _option_text,
    "password": _option_text,
    "ssl_cert_reqs": _option_cert_reqs,
    "ssl_ca_certs": _option_text,
    "ssl_certfile": _option_text,
    "ssl_keyfile": _option_text,
    "ssl_check_hostname": _option_bool,
}


def _parse_option(url: str, name: str, value: object) -> object:
    parse = _OPTIONS.get(name)
    if parse is None:
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r}: unknown option {name!r} (known: {sorted(_OPTIONS)})"
        )
    try:
        return parse(name, value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"Redis URL {_redact(url)!r}: option {exc}") from None


# -- errors --------------------------------------------------------------------------------


def backend_error(exc: BaseException, operation: str, location: str = "") -> BackendUnavailable:
    """The `BackendUnavailable` to raise for a driver failure.

    Use as ``except REDIS_ERRORS as exc: raise backend_error(exc, "EVALSHA", where) from exc``
    so the driver's exception stays reachable as ``__cause__``.
    """
    where = f" at {location}" if location else ""
    return BackendUnavailable(f"redis {operation}{where} failed: {type(exc).__name__}: {exc}")


# -- commands on the hot path --------------------------------------------------------------


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


# -- scripts -------------------------------------------------------------------------------

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

    def run(self, client: redis.Redis, keys: Sequence[bytes], args: Sequence[bytes]) -> Any:
        """`call` for arguments already encoded as bytes, through `call_packed`.

        Raises:
            BackendUnavailable: the server failed, timed out or the script raised an error.
        """
        numkeys = b"%d" % len(keys)
        try:
            try:
                return call_packed(client, pack(b"EVALSHA", self.sha_bytes, numkeys, *keys, *args))
            except NoScriptError:
                source = self.source.encode("utf-8")
                return call_packed(client, pack(b"EVAL", source, numkeys, *keys, *args))
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


# -- key names -----------------------------------------------------------------------------


def _escape(part: str) -> str:
    # Parts never contain ':', '{' or '}' after this, so a key splits back unambiguously and
    # only the caller's key forms the hash tag.
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key names under one prefix: ``{prefix}:{part}:...:{part}:{{{tag}}}``.

    The caller's key is the ``{hash tag}``, so every key about one caller key (several
    policies, a breaker and its window) lands in one Cluster slot and a multi-key script
    over them is Cluster-safe. A prefix that itself contains ``{tag}`` pins every key of
    the space to one slot (then any multi-key call is safe, at the cost of sharding).

    Args:
        prefix: the namespace, e.g. ``"myapp"``; 1..100 printable characters.
    """

    prefix: str = "sdk"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.prefix, str)
            or not 0 < len(self.prefix) <= 100
            or not self.prefix.isprintable()
            or " " in self.prefix
        ):
            raise ConfigurationError(
                f"key prefix {self.prefix!r} must be 1..100 printable characters without spaces"
            )

    def head(self, *parts: str) -> str:
        """Everything before the tag, ending in ``{``: append the key and ``}``."""
        return ":".join((self.prefix, *map(_escape, parts), "{"))

    def key(self, *parts: str, tag: str) -> str:
        """The full key for ``parts`` with ``tag`` as its hash tag."""
        return f"{self.head(*parts)}{tag}}}"
