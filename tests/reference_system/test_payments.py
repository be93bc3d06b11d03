"""Payments through the breaker and retries, in-process on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from reference_system.app import create_app
from reference_system.demo import run_payment_scenario
from sysdesign_kit.clock import VirtualClock

PAY = "/api/v1/payments"
KEY = {"X-API-Key": "demo-premium-key"}
ADMIN = {"X-API-Key": "demo-admin-key"}


@pytest.fixture
async def vclock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def app(vclock: VirtualClock) -> AsyncIterator[Starlette]:
    app = create_app(clock=vclock)
    async with app.state.health:
        yield app
    await app.state.payments.aclose()


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.40", 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ref.test") as client:
        yield client


def charge(order_id: int = 1, amount: Any = 10.0) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount}


async def test_a_payment_is_charged_once_per_order(http: httpx.AsyncClient, app: Starlette) -> None:
    first = await http.post(PAY, json=charge(7), headers=KEY)
    again = await http.post(PAY, json=charge(7), headers=KEY)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()  # the same capture: Idempotency-Key order-7
    assert first.json()["status"] == "captured"
    assert len(app.state.payments.service.captured) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (charge(), {}, 401),
        (charge(0), KEY, 422),
        (charge(1, -3), KEY, 422),
        (charge(1, "ten"), KEY, 422),
        (charge(1, True), KEY, 422),
        ([1, 2], KEY, 422),
        ({"order_id": 1}, KEY, 422),
    ],
)
async def test_bad_payments_are_named(
    http: httpx.AsyncClient, body: Any, headers: dict[str, str], status: int
) -> None:
    answer = await http.post(PAY, json=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"


async def test_garbage_and_oversized_bodies_are_422(http: httpx.AsyncClient) -> None:
    assert (await http.post(PAY, content=b"{not json", headers=KEY)).status_code == 422
    assert (await http.post(PAY, content=b"[" * 10_000, headers=KEY)).status_code == 422


async def test_retries_ride_out_a_short_outage(
    http: httpx.AsyncClient, app: Starlette, vclock: VirtualClock
) -> None:
    service = app.state.payments.service
    service.fail_for(1.5, retry_after=1)  # the service asks for 1 s: no jitter then
    answer = await http.post(PAY, json=charge(3), headers=KEY)
    assert answer.status_code == 201
    assert service.charges == 3  # failed at 0 s and 1 s, charged at 2 s
    assert vclock.monotonic() == 1000.0 + 2.0


async def test_a_long_outage_opens_the_breaker_and_payments_are_queued(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    payments = app.state.payments
    payments.service.fail_for(120)
    statuses = [
        (await http.post(PAY, json=charge(i), headers=KEY)).status_code for i in range(1, 5)
    ]
    # 4 failed attempts are under minimum_calls (5): the first payment runs out of retries;
    # the next one's first failure opens the breaker, and then everything fails fast.
    assert statuses == [502, 202, 202, 202]
    assert payments.service.charges == 5
    queued = await http.post(PAY, json=charge(9), headers=KEY)
    assert queued.json()["status"] == "queued"
    assert 1 <= int(queued.headers["retry-after"]) <= 30
    status = (await http.get(f"{PAY}/breaker")).json()
    assert (status["state"], status["queued_payments"]) == ("open", 4)


async def test_retries_that_run_out_answer_502(http: httpx.AsyncClient, app: Starlette) -> None:
    payments = app.state.payments
    for i in range(10):  # a window full of successes: 4 failures stay under 50%
        assert (await http.post(PAY, json=charge(100 + i), headers=KEY)).status_code == 201
    payments.service.fail_for(600)
    answer = await http.post(PAY, json=charge(200), headers=KEY)
    assert answer.status_code == 502
    assert "failed (503)" in answer.json()["detail"]
    assert payments.breaker.state.value == "closed"


async def test_the_outage_switch_needs_the_admin_scope(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    switch = "/admin/payments/outage"
    assert (await http.post(switch, json={"seconds": 5})).status_code == 401
    assert (await http.post(switch, json={"seconds": 5}, headers=KEY)).status_code == 403
    for bad in ({"seconds": -1}, {"seconds": 5, "status": 404}, {"seconds": "5"}, [5]):
        assert (await http.post(switch, json=bad, headers=ADMIN)).status_code == 422
    answer = await http.post(switch, json={"seconds": 5, "status": 500}, headers=ADMIN)
    assert answer.json() == {"outage_seconds": 5, "status": 500}
    assert app.state.payments.service.failing()
    paid = await http.post(PAY, json=charge(1), headers=KEY)
    assert paid.status_code == 502  # a 500 is not retried, and not the caller's fault


async def test_the_demo_scenario(app: Starlette, vclock: VirtualClock) -> None:
    steps = await run_payment_scenario(app, clock=vclock)
    assert [(dict(step.statuses), step.reached_service) for step in steps] == [
        ({201: 3}, 3),
        ({202: 4}, 3),  # 3 failed attempts open the breaker (3 of 6 calls); then fail fast
        ({202: 2}, 1),  # the half-open trial fails; the breaker reopens
        ({201: 5}, 5),  # 3 trials pass, closed again
    ]
    assert app.state.payments.breaker.state.value == "closed"


async def test_operators_force_and_reset_the_breaker(http: httpx.AsyncClient) -> None:
    switch = "/admin/payments/breaker"
    assert (await http.post(switch, json={"action": "reset"})).status_code == 401
    assert (await http.post(switch, json={"action": "reset"}, headers=KEY)).status_code == 403
    assert (await http.post(switch, json={"action": "explode"}, headers=ADMIN)).status_code == 422
    forced = (await http.post(switch, json={"action": "force_open"}, headers=ADMIN)).json()
    assert (forced["state"], forced["forced"], forced["retry_after"]) == ("open", True, None)
    queued = await http.post(PAY, json=charge(5), headers=KEY)
    assert (queued.status_code, queued.json()["retry_after"]) == (202, None)
    assert "retry-after" not in queued.headers  # forced open: no end is known
    closed = (await http.post(switch, json={"action": "reset"}, headers=ADMIN)).json()
    assert (closed["state"], closed["forced"]) == ("closed", False)
    assert (await http.post(PAY, json=charge(5), headers=KEY)).status_code == 201
