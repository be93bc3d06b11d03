"""The cache benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape and
that the targets are printed.
"""

from __future__ import annotations

import pytest

from tests.benchmark_smoke import Rows, check_shape, pairs, run_quick

HIT_ASYNC = "async decorator hit, memory (us per call)"
HIT_SYNC = "sync decorator hit, memory (us per call)"
WALL = "stampede: 1000 callers, cold key, 50 ms loader: wall (ms)"
CALLS = "stampede: 1000 callers, cold key: loader calls"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, str]:
    out = tmp_path_factory.mktemp("bench") / "cache.json"
    rows, stdout, stderr = run_quick("cache.py", out)
    assert "Task was destroyed" not in stderr  # every peer's cache is closed
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])


@pytest.mark.parametrize(
    ("case", "peer"),
    [
        (HIT_ASYNC, "floor: awaited dict lookup"),
        (HIT_ASYNC, "ours, share_objects=True"),
        (HIT_ASYNC, "cashews (protected, default)"),
        (HIT_ASYNC, "cashews (protected=False)"),
        (HIT_ASYNC, "cashews early (protected)"),
        (HIT_ASYNC, "aiocache"),
        (HIT_SYNC, "functools.lru_cache"),
        (HIT_SYNC, "floor: dict lookup"),
        (HIT_SYNC, "ours, share_objects=True"),
        (WALL, "cashews (protected, default)"),
        (WALL, "aiocache"),
        (WALL, "aiocache cached_stampede"),
        (CALLS, "cashews (protected=False)"),
        # the suite always has a Redis (REDIS_URL, which the benchmark reads too)
        ("async decorator hit, Redis (us per call)", "raw redis-py GET (same bytes)"),
    ],
)
def test_rows_are_written(run: tuple[Rows, str], case: str, peer: str) -> None:
    assert (case, peer) in pairs(run[0])


def test_our_stampede_made_one_load(run: tuple[Rows, str]) -> None:
    calls = [entry["ours_us"] for entry in run[0] if entry["case"] == CALLS]
    assert calls
    assert set(calls) == {1}  # a count, not a speed: exactly one loader call


def test_targets_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== targets (issue 5) ==" in stdout
    assert "our async decorator hit <= 1.5 us (memory)" in stdout
    assert "scaled to the issue's machine (floor 0.12 us)" in stdout
    assert "stampede: exactly 1 loader call for 1000 concurrent callers" in stdout
    assert "stampede: wall time <= loader + 25 ms" in stdout
    assert "Redis hit within 1.2x of a raw GET: " in stdout
