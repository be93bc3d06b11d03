"""Fixtures of the transport tests: a real, scriptable HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.transport.flaky_server import FlakyServer, running


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    """A fresh `FlakyServer`; script it with ``flaky.script(Reply(503, ...), Reset(), ...)``."""
    yield from running()
