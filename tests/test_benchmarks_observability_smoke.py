"""The observability benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that both sections produced rows of the documented shape.
"""

from __future__ import annotations

import pytest

from tests.benchmark_smoke import Rows, check_shape, run_quick


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, str]:
    out = tmp_path_factory.mktemp("bench") / "observability.json"
    rows, stdout, _ = run_quick("observability.py", out)
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])


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
def test_expected_rows_are_written(run: tuple[Rows, str], case: str, peer: str) -> None:
    rows, _ = run
    assert {"case": case, "peer": peer} in [{"case": e["case"], "peer": e["peer"]} for e in rows]


def test_targets_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== targets (issue 3) ==" in stdout
    assert "our full layer <= 10 us per request overhead" in stdout
    assert "scaled to the issue's machine (bare Starlette 7.8 us)" in stdout
