"""Redis URLs into settings, and clients made from them with short timeouts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "RedisSettings",
    "async_client",
    "async_connection_factory",
    "parse_redis_url",
    "sync_client",
]

#: Seconds to connect or to wait for a reply before the backend counts as unavailable.
DEFAULT_TIMEOUT: Final = 0.25

_SCHEMES = ("redis", "rediss", "unix")
_CERT_REQS = ("none", "optional", "required")


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
