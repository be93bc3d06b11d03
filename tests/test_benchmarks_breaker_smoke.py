"""The breaker benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape and
that the targets are printed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "breaker.py"
KEYS = {"case", "ours_us", "peer", "peer_us", "ratio", "unit"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, object]], str]:
    out = tmp_path_factory.mktemp("bench") / "breaker.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
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
def test_expected_rows_are_written(
    run: tuple[list[dict[str, object]], str], case: str, peer: str
) -> None:
    rows, _ = run
    assert {"case": case, "peer": peer} in [{"case": e["case"], "peer": e["peer"]} for e in rows]


def test_targets_are_printed(run: tuple[list[dict[str, object]], str]) -> None:
    _, stdout = run
    assert "== targets (issue 4) ==" in stdout
    assert "success-path overhead, sync <= 0.4 us" in stdout
    assert "fail fast while open, async <= 1.0 us" in stdout
    assert "scaled to the issue's machine (floor 0.11 us)" in stdout
