"""Redis URLs: every accepted form, and a named error for each wrong part."""

from __future__ import annotations

from typing import Any

import pytest

from sysdesign_kit.backends.redis import (
    DEFAULT_TIMEOUT,
    RedisSettings,
    async_connection_factory,
    parse_redis_url,
    sync_client,
)
from sysdesign_kit.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", {"host": "localhost", "port": 6379, "db": 0}),
        ("redis://127.0.0.1:6380/3", {"host": "127.0.0.1", "port": 6380, "db": 3}),
        ("redis://[::1]:7000/1", {"host": "::1", "port": 7000, "db": 1}),
        ("REDIS://Example.COM", {"host": "example.com", "scheme": "redis"}),
        ("redis://:s3cret@h/2", {"password": "s3cret", "username": None, "db": 2}),
        ("redis://alice:p%40ss%23w@h", {"username": "alice", "password": "p@ss#w"}),
        ("redis://h/?db=5", {"db": 5}),
        ("redis://h?socket_timeout=0.05", {"socket_timeout": 0.05}),
        (
            "redis://h?socket_connect_timeout=2&retries=0",
            {"socket_connect_timeout": 2.0, "retries": 0},
        ),
        (
            "redis://h?max_connections=4&client_name=api",
            {"max_connections": 4, "client_name": "api"},
        ),
        ("redis://h?health_check_interval=0", {"health_check_interval": 0.0}),
        ("rediss://h:6390", {"scheme": "rediss", "port": 6390, "ssl_cert_reqs": "required"}),
        (
            "rediss://h?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/ca.pem",
            {"ssl_cert_reqs": "none", "ssl_check_hostname": False, "ssl_ca_certs": "/ca.pem"},
        ),
        ("unix:///run/redis.sock", {"scheme": "unix", "path": "/run/redis.sock", "db": 0}),
        ("unix:///tmp/r.sock?db=2&password=pw", {"path": "/tmp/r.sock", "db": 2, "password": "pw"}),
        (
            "unix://bob:pw@/tmp/r%20s.sock",
            {"username": "bob", "password": "pw", "path": "/tmp/r s.sock"},
        ),
    ],
)
def test_valid_urls(url: str, expected: dict[str, Any]) -> None:
    settings = parse_redis_url(url)
    for name, value in expected.items():
        assert getattr(settings, name) == value, name


def test_defaults_are_short_timeouts_and_one_retry() -> None:
    settings = parse_redis_url("redis://h")
    assert settings.socket_timeout == settings.socket_connect_timeout == DEFAULT_TIMEOUT == 0.25
    assert settings.retries == 1


def test_keyword_overrides_win_and_are_validated() -> None:
    settings = parse_redis_url("redis://h?socket_timeout=1", socket_timeout=0.1, db=4)
    assert (settings.socket_timeout, settings.db) == (0.1, 4)
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        parse_redis_url("redis://h", socket_timeout=-1)


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://h", "scheme 'http'"),
        ("localhost:6379", "scheme"),
        ("redis://h:notaport", "port"),
        ("redis://h:99999", "port"),
        ("redis://h/abc", "db"),
        ("redis://h/-1", "db"),
        ("redis://h?db=x", "db"),
        ("redis://h?socket_timeout=0", "socket_timeout"),
        ("redis://h?socket_timeout=nan", "socket_timeout"),
        ("redis://h?socket_timeout=fast", "socket_timeout"),
        ("redis://h?max_connections=0", "max_connections"),
        ("redis://h?retries=-1", "retries"),
        ("redis://h?bogus=1", "unknown option 'bogus'"),
        ("redis://h?db=1&db=2", "given twice"),
        ("redis://h?client_name=", "client_name"),
        ("redis://h?ssl_cert_reqs=none", "needs the rediss:// scheme"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("rediss://h?ssl_check_hostname=perhaps", "ssl_check_hostname"),
        ("redis://user:pa#ss@h", "fragment"),
        ("redis://[::1", "Invalid IPv6"),
        ("unix://", "path"),
        ("unix://relative/sock", "path"),
    ],
)
def test_invalid_urls_name_the_bad_part(url: str, part: str) -> None:
    with pytest.raises(ConfigurationError, match=part.replace("(", r"\(").replace("?", r"\?")):
        parse_redis_url(url)


def test_errors_never_print_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_redis_url("redis://alice:hunter2@h?bogus=1")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(parse_redis_url("redis://alice:hunter2@h"))


def test_non_string_url() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        parse_redis_url(b"redis://h")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "location"),
    [
        (RedisSettings(), "redis://localhost:6379/0"),
        (RedisSettings(host="::1", db=2), "redis://[::1]:6379/2"),
        (RedisSettings(scheme="unix", path="/r.sock", db=1), "unix:///r.sock?db=1"),
    ],
)
def test_location_has_no_credentials(settings: RedisSettings, location: str) -> None:
    assert settings.location == location


def test_clients_get_the_settings() -> None:
    settings = parse_redis_url("redis://u:pw@h:6390/2?socket_timeout=0.3&retries=0")
    client = sync_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h", 6390, 2)
    assert (kwargs["username"], kwargs["password"], kwargs["socket_timeout"]) == ("u", "pw", 0.3)
    assert client.get_retry().get_retries() == 0  # type: ignore[union-attr]
    client.close()
    # The hot path's own connections: same server, no read timeout (it times replies itself).
    connection = async_connection_factory(settings)()
    assert (connection.host, connection.port, connection.db) == ("h", 6390, 2)  # type: ignore[attr-defined]
    assert connection.socket_timeout is None


def test_unix_and_tls_clients() -> None:
    unix = async_connection_factory(parse_redis_url("unix:///tmp/r.sock?db=1"))()
    assert unix.path == "/tmp/r.sock"  # type: ignore[attr-defined]
    tls = async_connection_factory(parse_redis_url("rediss://h?ssl_cert_reqs=none"))()
    assert type(tls).__name__ == "SSLConnection"
