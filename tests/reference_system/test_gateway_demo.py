"""The demo's gateway section: every case's answer, the tiers, and the README's copy of it."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette

from reference_system.demo_keys import DemoKeys
from reference_system.gateway_demo import run_gateway_scenario
from sysdesign_kit.cli import main
from sysdesign_kit.clock import ManualClock
from tests.test_readme import _blocks


async def test_gateway_cases_and_tiers(app: Starlette, clock: ManualClock) -> None:
    keys = app.state.jwt_keys
    cases, tallies = await run_gateway_scenario(
        app, clock=clock, keys=keys, other_key=DemoKeys.generate()
    )
    answers = [(case.request.split()[0], case.status, case.why.split(" (")[0]) for case in cases]
    assert answers == [
        ("GET", 200, "tier anonymous, X-Cache MISS"),
        ("GET", 200, "tier free, X-Cache HIT"),
        ("GET", 200, "tier premium, X-Cache HIT"),
        ("GET", 403, "insufficient_scope"),
        ("GET", 401, "invalid_token"),  # another key
        ("GET", 401, "invalid_token"),  # expired
        ("GET", 401, "invalid_token"),  # payload edited
        ("GET", 400, "invalid_request"),
        ("POST", 401, "no credentials: a Bearer challenge without an error"),
        ("POST", 403, "insufficient_scope"),
        ("POST", 201, "order 1 placed, 193.72 EUR"),
        ("POST", 422, "$.items[0].quantity: Expected `int` >= 1"),
        ("GET", 200, "the caller's own order"),
        ("GET", 404, "no order with id 1"),
        ("GET", 200, "alice: tier free, 1 order(s)"),
        ("DELETE", 403, "a required role is missing"),
        ("DELETE", 204, "deleted; its cached copy dropped"),
        ("GET", 404, "no product with id 7, X-Cache MISS"),
    ]
    assert cases[3].why == "insufficient_scope (needs read)"
    assert cases[9].why == "insufficient_scope (needs write)"
    rows = [(dict(t.statuses), dict(t.denied_by)) for t in tallies]
    assert rows == [
        ({200: 20, 429: 5}, {"anonymous": 5}),
        ({200: 100, 429: 5}, {"free": 5}),
        ({200: 105}, {}),
    ]
    assert 7 not in app.state.products.db.catalog


def test_readme_shows_the_gateway_section_the_demo_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (shown,) = [code for _, code in _blocks("text") if code.startswith("gateway: JWT")]
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    assert shown.strip("\n") in printed  # tokens on the simulated clock: the same every run
    assert re.search(r"^  DELETE /api/v1/products/7 +token: role admin +204 ", printed, re.M)
