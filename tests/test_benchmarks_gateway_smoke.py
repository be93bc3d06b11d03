"""The gateway benchmark runs end to end in its tiny mode and writes well-formed rows.

Speed is never asserted: only that every section produced rows of the documented shape and
that the targets are printed, each measured.
"""

from __future__ import annotations

import pytest

from tests.benchmark_smoke import Rows, check_shape, pairs, run_quick

OVERHEAD = "request, overhead over bare (us per request): "


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, str]:
    out = tmp_path_factory.mktemp("bench") / "gateway.json"
    rows, stdout, _ = run_quick("gateway.py", out)
    return rows, stdout


def test_rows_have_the_documented_shape(run: tuple[Rows, str]) -> None:
    check_shape(run[0])


@pytest.mark.parametrize(
    "peer",
    ["slowapi (SlowAPIASGIMiddleware)", "slowapi (SlowAPIMiddleware)", "BaseHTTPMiddleware no-op"],
)
def test_request_overheads_are_compared_with_the_peers(run: tuple[Rows, str], peer: str) -> None:
    assert any(
        str(case).startswith(OVERHEAD) and row_peer == peer for case, row_peer in pairs(run[0])
    )


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "EdDSA"])
def test_pyjwt_alone_is_measured_per_algorithm(run: tuple[Rows, str], alg: str) -> None:
    cases = {str(case) for case, _ in pairs(run[0])}
    assert f"JWT verify {alg}, pyjwt.decode alone (us per token)" in cases


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "EdDSA"])
def test_our_verifier_is_measured_cold_and_repeat(run: tuple[Rows, str], alg: str) -> None:
    rows = pairs(run[0])
    for kind in ("cold", "repeat"):
        assert (f"JWT verify {alg}, {kind} token (us per token)", "pyjwt.decode alone") in rows


@pytest.mark.parametrize(
    "peer",
    [
        "slowapi (SlowAPIASGIMiddleware)",
        "ours: full chain, cold token",
        "ours: observability + rate limit",
        "floor: the chain's work hand-inlined, no features",
    ],
)
def test_the_full_chain_is_measured(run: tuple[Rows, str], peer: str) -> None:
    assert (OVERHEAD + "ours: full chain", peer) in pairs(run[0])


@pytest.mark.parametrize("layer", ["observability", "rate limit", "JWT authentication", "RBAC"])
def test_each_layer_is_measured_alone(run: tuple[Rows, str], layer: str) -> None:
    cases = {str(case) for case, _ in pairs(run[0])}
    assert f"request, overhead over bare, one layer alone: ours layer: {layer}" in cases


def test_targets_are_printed(run: tuple[Rows, str]) -> None:
    _, stdout = run
    assert "== targets (issue 6) ==" in stdout
    assert "full chain with a cached token adds <= 15 us per request" in stdout
    assert "repeat token verification <= 2 us" in stdout
    assert "cold verification RS256 within 1.1x of pyjwt alone" in stdout
    assert "NOT MEASURED" not in stdout  # every piece is built
