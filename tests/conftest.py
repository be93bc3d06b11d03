"""Shared fixtures: a manual clock, and a real Redis server (REDIS_URL) for the redis tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from sysdesign_kit.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test says so (starts at an aligned 1000.0 s)."""
    return ManualClock()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the suite runs against.

    ``scripts/test.sh`` always sets REDIS_URL. Run bare, 127.0.0.1:6379 is assumed; a
    missing server then fails the tests that need it (they never skip).
    """
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"sdk-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
