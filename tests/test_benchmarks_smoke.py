"""The rate-limit benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape.
The Redis section runs against the suite's real server (``redis_url``).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "ratelimit.py"
KEYS = {"case", "ours_us", "peer", "peer_us", "ratio", "unit"}


def _run(tmp_path: Path, *args: str) -> tuple[list[dict[str, object]], str]:
    out = tmp_path / "ratelimit.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text(encoding="utf-8")), done.stdout


@pytest.mark.parametrize(
    ("section", "must_have"),
    [
        (
            "memory",
            [
                "memory sync token_bucket hit (decision), 1 hot key",
                "memory sync token_bucket try_acquire (bool), 1 hot key",
                "memory async fixed_window try_acquire (bool), 1k keys",
            ],
        ),
        ("memory-per-key", ["memory per live key, 5,000 keys, sliding_window"]),
    ],
)
def test_memory_sections_write_rows(tmp_path: Path, section: str, must_have: list[str]) -> None:
    rows, stdout = _run(tmp_path, "--only", section)
    assert rows
    for entry in rows:
        assert set(entry) == KEYS
        assert isinstance(entry["case"], str)
        assert isinstance(entry["peer"], str)
        for field in ("ours_us", "peer_us", "ratio"):
            assert isinstance(entry[field], int | float)
            assert math.isfinite(entry[field])  # type: ignore[arg-type]
    cases = {entry["case"] for entry in rows}
    assert set(must_have) <= cases
    assert "== targets (issue 2) ==" in stdout


@pytest.mark.redis
def test_redis_section_writes_rows_and_leaves_no_keys(tmp_path: Path, redis_url: str) -> None:
    import redis

    rows, stdout = _run(tmp_path, "--only", "redis", "--redis-url", redis_url)
    if "Redis skipped: our Redis backend is not importable" in stdout:
        assert rows == []
        return
    assert {"redis sync 1 caller, token_bucket", "redis async 50 tasks, fixed_window"} <= {
        entry["case"] for entry in rows
    }
    assert all(entry["ours_us"] > 0 and entry["peer_us"] > 0 for entry in rows)  # type: ignore[operator]
    found = re.search(r"under the prefix '(sdkbench[0-9a-f]+)'", stdout)
    assert found, stdout
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{found.group(1)}*", count=1000))
    finally:
        client.close()
