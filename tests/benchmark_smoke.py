"""What every benchmark smoke test does: run a benchmark in its tiny mode, check its rows.

Speed is never asserted: only that the script ran, wrote rows of the documented shape
(``case, ours_us, peer, peer_us, ratio, unit``, finite and non-negative figures) and printed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"case", "ours_us", "peer", "peer_us", "ratio", "unit"}
Rows = list[dict[str, object]]


def run_quick(script: str, out: Path, *args: str) -> tuple[Rows, str, str]:
    """Run ``benchmarks/<script>`` with ``--quick``; its rows, stdout and stderr."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows: Rows = json.loads(out.read_text(encoding="utf-8"))
    return rows, done.stdout, done.stderr


def check_shape(rows: Rows) -> None:
    """Every row has the documented fields, with finite, non-negative figures."""
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


def pairs(rows: Rows) -> list[tuple[object, object]]:
    """The (case, peer) of every row."""
    return [(entry["case"], entry["peer"]) for entry in rows]
