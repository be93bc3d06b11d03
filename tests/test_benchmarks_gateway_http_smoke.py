"""The HTTP gateway benchmark serves its apps with uvicorn, loads them and writes rows.

Speed is never asserted. The quick run uses wrk when it is installed and otherwise the
Python load generator, so the path runs on every machine; the fallback also runs on its own.
A full run without wrk refuses to start and says how to install it.
"""

from __future__ import annotations

import sys

import pytest
from benchmarks import gateway_http

from tests.benchmark_smoke import Rows, check_shape, pairs, run_quick

pytestmark = pytest.mark.slow

CHAIN = "ours: full chain"
WRAP = "ours: full chain built by Gateway(...).wrap"
FLOOR = "floor: the chain's work hand-inlined, no features"
WRK_REPORT = """\
Running 10s test @ http://127.0.0.1:40000/api/v1/products/42
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms  512.00us   9.00ms   90.00%
    Req/Sec     5.20k   300.00     5.60k    80.00%
  51873 requests in 10.01s, 8.35MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   5182.12
Transfer/sec:    854.12KB
"""


@pytest.fixture(scope="module", params=[("auto", "--layers"), ("python",)], ids=["auto", "python"])
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Rows, str]:
    load, *more = request.param
    out = tmp_path_factory.mktemp("bench") / "gateway_http.json"
    rows, stdout, _ = run_quick("gateway_http.py", out, "--load", load, *more)
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])
    assert all(str(case).startswith("uvicorn + ") for case, _ in pairs(run[0]))


@pytest.mark.parametrize(
    "what",
    [
        "us per request (1e6 / req/s)",
        pytest.param(
            "server CPU us per request",
            marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc"),
        ),
    ],
)
@pytest.mark.parametrize("ours", [CHAIN, WRAP])
@pytest.mark.parametrize("peer", ["bare Starlette", "slowapi (SlowAPIASGIMiddleware)"])
def test_ours_is_compared_with_bare_and_slowapi(
    run: tuple[Rows, str], what: str, ours: str, peer: str
) -> None:
    assert any(
        str(case).endswith(f", {what}: {ours}") and row_peer == peer
        for case, row_peer in pairs(run[0])
    )


@pytest.mark.parametrize("layer", ["observability", "JWT authentication", "rate limit", "RBAC"])
def test_layers_alone_are_measured_when_asked(
    run: tuple[Rows, str], layer: str, request: pytest.FixtureRequest
) -> None:
    asked = "--layers" in request.node.callspec.params["run"]
    cases = [str(case) for case, peer in pairs(run[0]) if peer == "bare Starlette"]
    found = any(case.endswith(f"one layer alone: ours layer: {layer}") for case in cases)
    assert found == asked


def test_requests_per_second_and_the_target_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== requests per second (median) ==" in stdout
    assert "== targets (issue 6) ==" in stdout
    line = next(x for x in stdout.splitlines() if "chain keeps >= 70% of bare" in x)
    assert "[    MET     ]" in line or "[  NOT MET   ]" in line


def test_wrk_report_is_read() -> None:
    result = gateway_http.parse_wrk(WRK_REPORT)
    assert (result.requests, result.bad, result.errors) == (51873, 7, 3)
    assert result.rps == pytest.approx(51873 / 10.01)


def test_a_full_run_without_wrk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_http.shutil, "which", lambda _name: None)
    with pytest.raises(SystemExit, match="apt-get install -y wrk"):
        gateway_http.choose_load("auto", quick=False, connections=16)
    assert isinstance(gateway_http.choose_load("auto", True, 16), gateway_http.PythonLoad)


def test_the_floor_is_a_reference_except_with_the_layers(
    run: tuple[Rows, str], request: pytest.FixtureRequest
) -> None:
    layers = "--layers" in request.node.callspec.params["run"]
    compared = {str(case) for case, peer in pairs(run[0]) if peer == FLOOR}
    assert bool(compared) != layers
    assert all(case.endswith((CHAIN, WRAP)) for case in compared)
