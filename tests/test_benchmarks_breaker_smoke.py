"""The breaker benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape and
that the targets are printed.
"""

from __future__ import annotations

import pytest

from tests.benchmark_smoke import Rows, check_shape, run_quick


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, str]:
    out = tmp_path_factory.mktemp("bench") / "breaker.json"
    rows, stdout, _ = run_quick("breaker.py", out)
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])


SUCCESS_SYNC = "success path overhead, sync (us per call over a bare call)"
SUCCESS_ASYNC = "success path overhead, async (us per call over a bare call)"
FAST_SYNC = "fail fast while open, sync (raise + catch, us over a bare call)"
FAST_ASYNC = "fail fast while open, async (raise + catch, us over a bare call)"


@pytest.mark.parametrize(
    ("case", "peer"),
    [
        (SUCCESS_SYNC, "pybreaker"),
        (SUCCESS_SYNC, "circuitbreaker"),
        (SUCCESS_SYNC, "purgatory (sync)"),
        (SUCCESS_SYNC, "floor: closed check + counter"),
        (SUCCESS_SYNC, "floor with threading.Lock"),
        (SUCCESS_SYNC, "ours, TimeWindow(60 s, 10 buckets)"),
        (SUCCESS_ASYNC, "circuitbreaker"),
        (SUCCESS_ASYNC, "aiobreaker"),
        (SUCCESS_ASYNC, "purgatory"),
        (SUCCESS_ASYNC, "floor with threading.Lock"),
        (FAST_SYNC, "pybreaker"),
        (FAST_SYNC, "circuitbreaker"),
        (FAST_SYNC, "purgatory (sync)"),
        (FAST_SYNC, "floor: closed check + counter"),
        (FAST_ASYNC, "aiobreaker"),
        (FAST_ASYNC, "purgatory"),
    ],
)
def test_expected_rows_are_written(run: tuple[Rows, str], case: str, peer: str) -> None:
    rows, _ = run
    assert {"case": case, "peer": peer} in [{"case": e["case"], "peer": e["peer"]} for e in rows]


def test_targets_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== targets (issue 4) ==" in stdout
    assert "success-path overhead, sync <= 0.4 us" in stdout
    assert "fail fast while open, async <= 1.0 us" in stdout
    assert "scaled to the issue's machine (floor 0.11 us)" in stdout
