"""The observability benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that both sections produced rows of the documented shape.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "observability.py"
KEYS = {"case", "ours_us", "peer", "peer_us", "ratio", "unit"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, object]], str]:
    out = tmp_path_factory.mktemp("bench") / "observability.json"
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


@pytest.mark.parametrize(
    ("case", "peer"),
    [
        ("request, absolute (us per request)", "bare Starlette"),
        ("request, overhead over bare (us per request)", "starlette-exporter"),
        ("request, overhead over bare (us per request)", "prometheus-fastapi-instrumentator"),
        ("request, overhead over bare, ours metrics only", "starlette-exporter"),
        ("request, overhead over bare (us per request)", "ours full + OTel SDK"),
        (
            "access log line: AccessLog.emit + JsonFormatter",
            "stdlib logger.info, %(message)s formatter",
        ),
        (
            "request span: RequestTracer start+finish on the SDK",
            "OTel SDK: one span, same attributes, start+end",
        ),
        ("event with no sink, guarded publish", "publish() unguarded, no listener"),
        ("RateLimiter.sync.hit, no listener", "with one no-op listener"),
    ],
)
def test_expected_rows_are_written(
    run: tuple[list[dict[str, object]], str], case: str, peer: str
) -> None:
    rows, _ = run
    assert {"case": case, "peer": peer} in [{"case": e["case"], "peer": e["peer"]} for e in rows]


def test_targets_are_printed(run: tuple[list[dict[str, object]], str]) -> None:
    _, stdout = run
    assert "== targets (issue 3) ==" in stdout
    assert "our full layer <= 10 us per request overhead" in stdout
    assert "scaled to the issue's machine (bare Starlette 7.8 us)" in stdout
