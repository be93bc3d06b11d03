"""The retry benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape.
"""

from __future__ import annotations

import pytest

from tests.benchmark_smoke import Rows, check_shape, run_quick


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, str]:
    out = tmp_path_factory.mktemp("bench") / "retry.json"
    rows, stdout, stderr = run_quick("retry.py", out)
    assert stderr == ""  # no peer logs its retries
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "peer",
    [
        "floor (try/except loop)",
        "tenacity",
        "backoff",
        "stamina",
        "ours, deadline=None",
        "ours + RetryBudget",
    ],
)
def test_success_rows_are_written(run: tuple[Rows, str], kind: str, peer: str) -> None:
    rows, _ = run
    pairs = [(e["case"], e["peer"]) for e in rows]
    assert (f"{kind} success path, overhead over bare (us per call)", peer) in pairs
    assert (f"{kind} success path, absolute (us per call)", "bare") in pairs


@pytest.mark.parametrize("peer", ["tenacity", "backoff", "stamina"])
def test_retry_rows_are_written(run: tuple[Rows, str], peer: str) -> None:
    rows, _ = run
    case = "sync, one failure then success, zero waits (us per call)"
    assert (case, peer) in [(e["case"], e["peer"]) for e in rows]


def test_targets_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== targets (issue 4) ==" in stdout
    assert "our sync retry <= 0.3 us overhead (success path)" in stdout
    assert "our async retry <= 0.3 us overhead (success path)" in stdout
    assert "scaled to the issue's machine (floor 0.07 us)" in stdout
