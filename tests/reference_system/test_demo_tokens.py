"""The demo's token contract: ``sysdesign-kit demo token`` and ``/.well-known/jwks.json``.

Tokens are checked the way an outside user would: pyjwt against the JWKS the app serves
(in-process, then over real HTTP from ``demo --serve``), or against the PEM's public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reference_system.app import create_app
from reference_system.demo_keys import AUDIENCE, ISSUER, DemoKeys, default_keys
from sysdesign_kit.cli import main
from sysdesign_kit.errors import ConfigurationError
from tests.reference_system.test_serve import serving

CLAIMS = {"sub", "tier", "roles", "scope", "exp", "iat", "iss", "aud"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "demo-key.pem"
    path.write_bytes(DemoKeys.generate().private_pem())
    return path


def _verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify as a client would: the JWK named by the token's kid, RS256 only, aud and iss."""
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


def _cli_token(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(["demo", "token", *argv]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n")
    assert out.count("\n") == 1  # just the token
    return out.strip(), err


async def _served_jwks(keys: DemoKeys | None = None) -> dict[str, Any]:
    app = create_app(jwt_keys=keys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        response = await c.get("/.well-known/jwks.json")
    await app.state.payments.aclose()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    jwks: dict[str, Any] = response.json()
    return jwks


async def test_cli_token_verifies_against_the_served_jwks(
    pem: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token, err = _cli_token(
        capsys,
        *("--tier", "premium", "--roles", "admin", "--scope", "read write admin"),
        *("--jwt-key", str(pem), "--sub", "alice", "--ttl", "120"),
    )
    assert err == ""
    claims = _verify(token, await _served_jwks(DemoKeys.from_pem(pem)))
    assert set(claims) == CLAIMS
    assert claims["sub"] == "alice"
    assert claims["tier"] == "premium"
    assert claims["roles"] == ["admin"]
    assert claims["scope"] == "read write admin"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 120


async def test_jwks_is_the_public_key_only_with_a_kid() -> None:
    jwks = await _served_jwks()
    [jwk] = jwks["keys"]
    assert set(jwk) == {"kty", "kid", "alg", "use", "n", "e"}  # no d, p, q...
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    assert jwk["kid"] == default_keys().kid
    # The kid is the RFC 7638 thumbprint, computed here from the published members.
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    assert jwk["kid"] == thumbprint.rstrip(b"=").decode()


def test_given_pem_signs_tokens_its_public_key_verifies(
    pem: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    token, _ = _cli_token(capsys, "--jwt-key", str(pem), "--roles", "admin,support")
    claims = jwt.decode(
        token, private.public_key(), algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["tier"] == "free"  # the defaults
    assert claims["scope"] == "read"
    assert claims["roles"] == ["admin", "support"]
    assert re.fullmatch(r"demo-free-[0-9a-f]{8}", claims["sub"])
    # The same PEM always gets the same kid, so servers and token minters agree on it.
    assert jwt.get_unverified_header(token)["kid"] == DemoKeys.from_pem(pem).kid


def test_without_a_key_the_token_is_signed_with_a_throwaway_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    token, err = _cli_token(capsys, "--tier", "premium")
    assert "--jwt-key" in err
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] != default_keys().kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tier"] == "premium"
    assert claims["roles"] == []


def _write(path: Path, key: Any) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tier", "gold"], "invalid choice: 'gold'"),
        (["--ttl", "0"], "'0' is not a number of seconds"),
        (["--ttl", "soon"], "'soon' is not a number of seconds"),
        (["--scope", 'read x"y'], "scope 'x\"y' must be printable ASCII"),
        (["--roles", "ad\\min"], "role 'ad\\\\min' must be printable ASCII"),
        (["--jwt-key", "/nonexistent/key.pem"], "cannot read the JWT key"),
        (["--serve"], "unrecognized arguments: --serve"),
    ],
)
def test_bad_token_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "token", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),  # noqa: S505
        (ec.generate_private_key(ec.SECP256R1()), "must be an RSA private key"),
        (None, "is not an unencrypted PEM private key"),
    ],
)
def test_unusable_key_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any, message: str
) -> None:
    path = tmp_path / "key.pem"
    if key is None:
        path.write_text("not a key\n")
    else:
        _write(path, key)
    with pytest.raises(ConfigurationError, match=message):
        DemoKeys.from_pem(path)
    for argv in (["demo", "token", "--jwt-key", str(path)], ["demo", "--jwt-key", str(path)]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_serve_before_token_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--serve", "token"])
    assert exc.value.code == 2
    assert "--serve belongs to demo alone" in capsys.readouterr().err


@pytest.mark.slow
def test_served_demo_publishes_the_jwks_of_its_key(pem: Path, tmp_path: Path) -> None:
    """Over real HTTP: a token from a separate `demo token` process with the same --jwt-key
    verifies against the JWKS that `demo --serve --jwt-key` serves."""
    minted = subprocess.run(
        [sys.executable, "-m", "sysdesign_kit.cli", "demo", "token", "--jwt-key", str(pem),
         "--tier", "premium", "--roles", "admin", "--scope", "read write admin"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    with serving(tmp_path, "--jwt-key", str(pem)) as client:
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        jwks = response.json()
    claims = _verify(minted.stdout.strip(), jwks)
    assert (claims["tier"], claims["roles"]) == ("premium", ["admin"])
    assert jwks["keys"][0]["kid"] == DemoKeys.from_pem(pem).kid


@pytest.mark.slow
def test_served_demo_prints_sample_tokens_for_its_generated_key(tmp_path: Path) -> None:
    with serving(tmp_path) as client:
        jwks = client.get("/.well-known/jwks.json").json()
    banner = (tmp_path / "stdout").read_text()
    assert "--jwt-key" in banner  # says how to share the key
    tokens = re.findall(r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)", banner)
    tiers = {_verify(token, jwks)["tier"] for token in tokens}
    assert tiers == {"free", "premium"}
