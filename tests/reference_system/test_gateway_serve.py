"""The issue's demo contract over real HTTP: ``sysdesign-kit demo --serve --jwt-key PATH``
with tokens from ``sysdesign-kit demo token --jwt-key PATH``, checked as an outside user would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reference_system.demo_keys import DemoKeys
from sysdesign_kit.cli import main
from tests.reference_system.test_serve import serving

pytestmark = pytest.mark.slow

PRODUCT = "/api/v1/products/"


def _token(capsys: pytest.CaptureFixture[str], pem: Path, *argv: str) -> str:
    assert main(["demo", "token", "--jwt-key", str(pem), *argv]) == 0
    return capsys.readouterr().out.strip()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tampered(token: str) -> str:
    """The token with more scopes written into its payload; the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "read write admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _challenge(response: httpx.Response) -> str:
    return str(response.headers.get("www-authenticate", ""))


def test_served_demo_keeps_the_gateway_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "demo-key.pem"
    pem.write_bytes(DemoKeys.generate().private_pem())
    # The read token as a user makes it: a separate `demo token` process.
    minted = subprocess.run(
        [sys.executable, "-m", "sysdesign_kit.cli", "demo", "token", "--jwt-key", str(pem),
         "--scope", "read", "--sub", "reader-1"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    read = _bearer(minted.stdout.strip())
    write_only = _bearer(_token(capsys, pem, "--scope", "write"))
    writer = _bearer(_token(capsys, pem, "--tier", "premium", "--scope", "read write"))
    admin = _bearer(_token(capsys, pem, "--roles", "admin", "--scope", "read"))
    not_admin = _bearer(_token(capsys, pem, "--tier", "premium", "--scope", "read write admin"))
    (tmp_path / "server").mkdir()
    with serving(tmp_path / "server", "--jwt-key", str(pem)) as client:
        jwks = client.get("/.well-known/jwks.json")
        assert jwks.status_code == 200
        [key] = jwks.json()["keys"]
        assert (key["kid"], key["alg"], key["kty"]) == (DemoKeys.from_pem(pem).kid, "RS256", "RSA")
        assert "ratelimit" not in jwks.headers  # exempt from the limits

        product = client.get(f"{PRODUCT}1", headers=read)
        assert product.status_code == 200, product.text
        assert product.json()["id"] == 1
        assert product.headers["ratelimit-policy"].startswith('"free";q=100;w=60')

        refused = client.get(f"{PRODUCT}1", headers=write_only)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert _challenge(refused).startswith("Bearer ")
        assert 'error="insufficient_scope"' in _challenge(refused)
        assert 'scope="read"' in _challenge(refused)

        anonymous = client.get(f"{PRODUCT}1")
        assert anonymous.status_code == 200
        assert anonymous.headers["ratelimit-policy"] == '"anonymous";q=20;w=60, "ip";q=500;w=60'

        premium = client.get(f"{PRODUCT}2", headers=writer)
        assert premium.headers["ratelimit-policy"].startswith('"premium";q=1000;w=60')
        api_key = client.get(f"{PRODUCT}2", headers={"X-API-Key": "demo-premium-key"})
        assert api_key.status_code == 200  # the demo keys keep working beside tokens

        tampered = client.get(f"{PRODUCT}1", headers=_bearer(_tampered(read["Authorization"][7:])))
        assert tampered.status_code == 401
        assert 'error="invalid_token"' in _challenge(tampered)
        assert tampered.headers["content-type"] == "application/problem+json"

        order = {"items": [{"product_id": 3, "quantity": 2}]}
        placed = client.post("/api/v1/orders", json=order, headers=writer)
        assert placed.status_code == 201, placed.text
        assert placed.json()["total"] == 498.0
        mine = client.get(placed.headers["location"], headers=writer)
        assert (mine.status_code, mine.json()) == (200, placed.json())
        assert client.get(placed.headers["location"], headers=read).status_code == 404
        denied = client.post("/api/v1/orders", json=order, headers=read)
        assert denied.status_code == 403
        assert 'error="insufficient_scope"' in _challenge(denied)
        assert 'scope="write"' in _challenge(denied)
        bad = client.post("/api/v1/orders", json={"items": [{"product_id": 0}]}, headers=writer)
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "$.items[0].product_id"

        me = client.get("/api/v1/users/me", headers=read).json()
        assert (me["id"], me["tier"], me["scopes"], me["auth"]) == (
            "reader-1", "free", ["read"], "jwt"
        )  # fmt: skip

        assert client.delete(f"{PRODUCT}9", headers=not_admin).status_code == 403
        assert client.delete(f"{PRODUCT}9", headers=read).status_code == 403
        assert client.delete(f"{PRODUCT}9").status_code == 401
        assert client.delete(f"{PRODUCT}9", headers=admin).status_code == 204
        assert client.get(f"{PRODUCT}9").status_code == 404
