"""The retry benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "retry.py"
KEYS = {"case", "ours_us", "peer", "peer_us", "ratio", "unit"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, object]], str]:
    out = tmp_path_factory.mktemp("bench") / "retry.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no peer logs its retries
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


def test_rows_have_the_documented_shape(run: tuple[list[dict[str, object]], str]) -> None:
    rows, _ = run
    assert rows
    for entry in rows:
        assert set(entry) == KEYS
        assert isinstance(entry["case"], str)
        assert isinstance(entry["peer"], str)
        for field in ("ours_us", "peer_us", "ratio"):
            value = entry[field]
            assert isinstance(value, int | float)
            assert math.isfinite(value)
            assert value >= 0


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
def test_success_rows_are_written(
    run: tuple[list[dict[str, object]], str], kind: str, peer: str
) -> None:
    rows, _ = run
    pairs = [(e["case"], e["peer"]) for e in rows]
    assert (f"{kind} success path, overhead over bare (us per call)", peer) in pairs
    assert (f"{kind} success path, absolute (us per call)", "bare") in pairs


@pytest.mark.parametrize("peer", ["tenacity", "backoff", "stamina"])
def test_retry_rows_are_written(run: tuple[list[dict[str, object]], str], peer: str) -> None:
    rows, _ = run
    case = "sync, one failure then success, zero waits (us per call)"
    assert (case, peer) in [(e["case"], e["peer"]) for e in rows]


def test_targets_are_printed(run: tuple[list[dict[str, object]], str]) -> None:
    _, stdout = run
    assert "== targets (issue 4) ==" in stdout
    assert "our sync retry <= 0.3 us overhead (success path)" in stdout
    assert "our async retry <= 0.3 us overhead (success path)" in stdout
    assert "scaled to the issue's machine (floor 0.07 us)" in stdout
