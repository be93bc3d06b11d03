"""The demo's product-cache scenario: exact counts on the virtual clock, shown in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reference_system.app import create_app
from reference_system.demo import PRODUCT_DB_LATENCY, run_product_scenario
from reference_system.products_report import ProductStep, format_products
from sysdesign_kit.cache import PRODUCT_TTL
from sysdesign_kit.cli import main
from sysdesign_kit.clock import VirtualClock

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_scenario_counts_hits_one_stampede_query_and_stale_answers() -> None:
    clock = VirtualClock()
    app = create_app(clock=clock)
    # Products read before the scenario are forgotten: it starts from an empty cache.
    warm = app.state.products
    await warm.cache.get_or_load("product:123", lambda: warm.db.get(123))
    started = clock.monotonic()
    steps = await run_product_scenario(app, clock=clock)
    await app.state.payments.aclose()
    rows = [
        (
            dict(step.statuses),
            [step.lookups[k] for k in ("hit", "miss", "coalesced", "stale")],
            step.queries,
            step.failed,
        )
        for step in steps
    ]
    assert rows == [
        ({200: 2000}, [1900, 100, 0, 0], 100, 0),  # 100 products, each queried once
        ({200: 200}, [0, 1, 199, 0], 1, 0),  # the stampede: one query for 200 reads
        ({200: 100}, [0, 100, 0, 100], 100, 100),  # DB down: all answered from stale copies
        ({503: 5}, [0, 5, 0, 0], 5, 5),  # nothing cached to fall back on
        ({200: 100}, [90, 10, 0, 0], 10, 0),  # DB back: fresh again
    ]
    assert steps[0].hit_ratio() == 0.95
    assert app.state.products.db.latency == PRODUCT_DB_LATENCY
    # 20 minutes of traffic, the queries' time, then two hours: past the TTL.
    assert clock.monotonic() - started > 7200 + 1200 > PRODUCT_TTL


def test_the_report_lines_up_and_totals_the_steps() -> None:
    app = create_app(clock=VirtualClock())
    steps = [ProductStep("a"), ProductStep("a longer step")]
    steps[0].statuses[200] = 3
    steps[0].lookups.update(hit=2, miss=1)
    steps[0].queries = 1
    steps[1].statuses.update({200: 1, 503: 1})
    steps[1].lookups.update(miss=2, stale=1)
    steps[1].queries = steps[1].failed = 2
    lines = format_products(steps, app.state.products)
    assert "not-found 30 s; DB query 0 ms, simulated clock" in lines[2]
    table = lines[3:7]
    assert [line.split()[-7:] for line in table[1:]] == [
        ["2", "1", "0", "0", "1", "0", "66.7%"],
        ["0", "2", "0", "1", "2", "2", "0.0%"],
        ["2", "3", "0", "1", "3", "2", "33.3%"],
    ]
    assert table[3].startswith("  all steps ")
    assert "200 x4, 503 x1" in table[3]
    # Columns line up: every row ends at the same width.
    assert len({len(line) for line in table}) == 1


def _shown() -> str:
    text = README.read_text(encoding="utf-8")
    (block,) = [
        match["code"]
        for match in re.finditer(r"^```text\n(?P<code>.*?)^```$", text, re.M | re.S)
        if match["code"].startswith("product cache:")
    ]
    return block


def test_the_readme_shows_what_the_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    # Virtual time and a seeded choice of products: the same on every run.
    assert _shown().strip("\n") in printed
    assert printed.index("payments through") < printed.index("product cache:")
