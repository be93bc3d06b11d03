"""The reference system in-process on a manual clock, one client address per fixture call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from starlette.applications import Starlette

from reference_system.app import create_app
from sysdesign_kit.clock import ManualClock

ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def app(clock: ManualClock) -> AsyncIterator[Starlette]:
    """The reference system on the manual clock, limiter state in memory, health checks
    running (httpx.ASGITransport sends no lifespan events, so the fixture starts them)."""
    app = create_app(clock=clock)
    async with app.state.health:
        yield app
    await app.state.payments.aclose()


@pytest.fixture
async def client_from(app: Starlette) -> AsyncIterator[ClientFactory]:
    """``client_from("203.0.113.7")``: an httpx client whose requests come from that address."""
    async with AsyncExitStack() as stack:

        def make(ip: str = "198.51.100.1", **headers: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(ip, 50_000))
            client = httpx.AsyncClient(
                transport=transport, base_url="http://reference.test", headers=headers
            )
            stack.push_async_callback(client.aclose)
            return client

        yield make
