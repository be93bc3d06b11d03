"""Attack and malformed tokens against an RS256 verifier: each refused with the right code."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sysdesign_kit.errors import AuthenticationFailed
from sysdesign_kit.gateway.jwt import JWTVerifier
from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key, verification_key

from .jwt_support import (
    AUDIENCE,
    ISSUER,
    NOW,
    SECRET,
    b64,
    claims,
    clock,
    craft,
    hs_sign,
    public_pem,
    rsa_key,
    segment,
)

KID = "rsa-1"
HEADER = {"alg": "RS256", "typ": "JWT", "kid": KID}


@cache
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs_sign(signing_input: str, key: rsa.RSAPrivateKey | None = None) -> str:
    signer = key or rsa_key()
    return b64(signer.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))


def rs256(
    header: Any = None, payload: Any = None, key: rsa.RSAPrivateKey | None = None, **extra: Any
) -> str:
    """A token with this header (HEADER by default, plus ``extra``) and payload, RS256-signed."""
    head = {**HEADER, **extra} if header is None else header
    signing_input = f"{segment(head)}.{segment(claims() if payload is None else payload)}"
    return f"{signing_input}.{rs_sign(signing_input, key)}"


def raw(header_json: str, payload_json: str) -> str:
    """A token whose segments hold exactly this text, signed properly."""
    signing_input = f"{b64(header_json.encode())}.{b64(payload_json.encode())}"
    return f"{signing_input}.{rs_sign(signing_input)}"


def swap(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[2] + "==")


def attacker_jwk() -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(attacker_key().public_key())
    )
    return jwk


def verifier() -> JWTVerifier:
    keys = StaticKeys(
        verification_key(rsa_key(), kid=KID), hmac_key(SECRET, kid="hs-1", issuer="internal")
    )
    return JWTVerifier(keys, issuer=[ISSUER, "internal"], audience=AUDIENCE, clock=clock())


BAD = "invalid_token"
MALFORMED = "invalid_token"  # RFC 6750 3.1: a malformed token is an invalid_token
NO_SIGNATURE = ""

ATTACKS: list[tuple[str, Callable[[], str], str]] = [
    ("alg none", lambda: f"{segment({'alg': 'none'})}.{segment(claims())}.", BAD),
    ("alg None", lambda: f"{segment({'alg': 'None', 'kid': KID})}.{segment(claims())}.", BAD),
    ("alg NONE, signature kept", lambda: swap(rs256(), 0, segment({**HEADER, "alg": "NONE"})), BAD),
    ("alg missing", lambda: rs256({"kid": KID}), BAD),
    ("alg not a string", lambda: rs256({"alg": ["RS256"], "kid": KID}), BAD),
    ("alg ES256K unsupported", lambda: rs256(alg="ES256K"), BAD),
    (
        "HS256 signed with the RSA public key PEM",
        lambda: craft({"alg": "HS256", "kid": KID}, claims(), public_pem(rsa_key())),
        BAD,
    ),
    (
        "HS256 with the PEM, no kid",
        lambda: craft({"alg": "HS256"}, claims(), public_pem(rsa_key())),
        BAD,
    ),
    (
        "PS256 on an RS256-only key",
        lambda: jwt.encode(claims(), rsa_key(), "PS256", {"kid": KID}),
        BAD,
    ),
    ("HMAC key asked for RS256", lambda: rs256(kid="hs-1", payload=claims(iss="internal")), BAD),
    ("expired", lambda: rs256(payload=claims(exp=NOW - 31)), BAD),
    ("not yet valid", lambda: rs256(payload=claims(nbf=NOW + 31)), BAD),
    ("issued in the future", lambda: rs256(payload=claims(iat=NOW + 3600)), BAD),
    ("wrong audience", lambda: rs256(payload=claims(aud="admin-api")), BAD),
    ("wrong issuer", lambda: rs256(payload=claims(iss="https://evil.example")), BAD),
    (
        "a key bound to another issuer",
        lambda: craft({"alg": "HS256", "kid": "hs-1"}, claims()),
        BAD,
    ),
    ("missing exp", lambda: rs256(payload=claims(exp=None)), BAD),
    ("exp a string", lambda: rs256(payload=claims(exp=str(NOW + 600))), BAD),
    ("exp 1e400 (infinity)", lambda: raw(json.dumps(HEADER), '{"sub":"x","exp":1e400}'), BAD),
    (
        "tampered payload",
        lambda: swap(rs256(), 1, segment(claims(sub="admin", roles=["root"]))),
        BAD,
    ),
    ("tampered header", lambda: swap(rs256(), 0, segment({**HEADER, "typ": "at+jwt"})), BAD),
    ("signed by another key", lambda: rs256(key=attacker_key()), BAD),
    ("signature truncated", lambda: swap(rs256(), 2, b64(signature(rs256())[:-3])), BAD),
    ("signature empty", lambda: rs256().rsplit(".", 1)[0] + ".", BAD),
    ("signature of another token", lambda: swap(rs256(), 2, rs256(sub="x").split(".")[2]), BAD),
    ("kid traversal", lambda: rs256(kid="../../etc/passwd"), BAD),
    ("kid with a NUL", lambda: rs256(kid="rsa-1\x00"), BAD),
    ("kid too long", lambda: rs256(kid="k" * 257), BAD),
    ("kid a number", lambda: rs256(kid=1), BAD),
    ("kid unknown", lambda: rs256(kid="rsa-2"), BAD),
    ("jku injection", lambda: rs256(jku="https://evil.example/jwks.json"), BAD),
    ("x5u injection", lambda: rs256(x5u="https://evil.example/cert.pem"), BAD),
    (
        "jwk injection",
        lambda: rs256(key=attacker_key(), jwk=attacker_jwk()),
        BAD,
    ),
    ("x5c injection", lambda: rs256(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]), BAD),
    ("unknown crit", lambda: rs256(crit=["exp"], exp=1), BAD),
    ("empty crit", lambda: rs256(crit=[]), BAD),
    ("b64 false", lambda: rs256(b64=False, crit=["b64"]), BAD),
    ("100 KiB token", lambda: rs256(payload=claims(pad="x" * 100 * 1024)), MALFORMED),
    ("8 KiB + 1", lambda: "a" * 8193, MALFORMED),
    ("truncated after the payload", lambda: rs256().rsplit(".", 1)[0], MALFORMED),
    ("truncated mid-payload", lambda: rs256()[:60], MALFORMED),
    ("two dots missing", lambda: rs256().replace(".", ""), MALFORMED),
    ("four segments", lambda: rs256() + ".AAAA", MALFORMED),
    ("five segments (JWE)", lambda: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", MALFORMED),
    ("empty", lambda: "", MALFORMED),
    ("only dots", lambda: "..", MALFORMED),
    ("bad base64 characters", lambda: swap(rs256(), 0, "!!!!"), MALFORMED),
    ("standard base64 alphabet", lambda: swap(rs256(), 2, "ab+/" * 10), MALFORMED),
    ("padded segment", lambda: swap(rs256(), 0, segment(HEADER) + "=="), MALFORMED),
    ("impossible base64 length", lambda: swap(rs256(), 2, "abcde"), MALFORMED),
    ("non-canonical last character", lambda: swap(rs256(), 2, "AB"), MALFORMED),
    ("non-JSON header", lambda: swap(rs256(), 0, b64(b"alg=RS256")), MALFORMED),
    ("non-JSON payload", lambda: raw(json.dumps(HEADER), "sub=admin"), MALFORMED),
    ("header a JSON array", lambda: raw('["RS256"]', json.dumps(claims())), MALFORMED),
    ("payload a JSON string", lambda: raw(json.dumps(HEADER), '"admin"'), MALFORMED),
    ("payload with NaN", lambda: raw(json.dumps(HEADER), '{"sub":"x","exp":NaN}'), MALFORMED),
    (
        "payload with Infinity",
        lambda: raw(json.dumps(HEADER), '{"sub":"x","exp":Infinity}'),
        MALFORMED,
    ),
    ("deeply nested payload", lambda: raw(json.dumps(HEADER), "[" * 5000), MALFORMED),
    (
        "header in UTF-16",
        lambda: swap(rs256(), 0, b64(json.dumps(HEADER).encode("utf-16"))),
        MALFORMED,
    ),
    ("invalid UTF-8", lambda: swap(rs256(), 1, b64(b'{"sub":"\xff"}')), MALFORMED),
    ("non-ASCII token", lambda: rs256() + "é", MALFORMED),
    ("surrounding spaces", lambda: f" {rs256()} ", MALFORMED),
    ("Bearer prefix left in", lambda: f"Bearer {rs256()}", MALFORMED),
]


def test_the_baseline_token_verifies() -> None:
    assert verifier().verify(rs256())["sub"] == "user-1"
    assert verifier().verify(craft({"alg": "HS256", "kid": "hs-1"}, claims(iss="internal")))


@pytest.mark.parametrize(("name", "make", "error"), ATTACKS, ids=[name for name, _, _ in ATTACKS])
async def test_each_attack_is_refused_with_the_right_code(
    name: str, make: Callable[[], str], error: str
) -> None:
    token = make()
    check = verifier()
    with pytest.raises(AuthenticationFailed) as caught:
        check.verify(token)
    with pytest.raises(AuthenticationFailed) as async_caught:
        await check.averify(token)
    for failure in (caught.value, async_caught.value):
        assert (failure.error, failure.status) == (error, 401)
        # The caller learns nothing that helps: one of three fixed descriptions, no detail.
        assert failure.description in (
            "The access token is malformed",
            "The access token is invalid",
            "The access token expired",
        )
        assert str(failure) != failure.description  # the log message says which check


def test_the_table_is_large_enough() -> None:
    assert len(ATTACKS) >= 30
    assert len({name for name, _, _ in ATTACKS}) == len(ATTACKS)


def test_only_an_expired_token_is_told_so() -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier().verify(rs256(payload=claims(exp=NOW - 60)))
    assert caught.value.description == "The access token expired"
    with pytest.raises(AuthenticationFailed) as caught:
        verifier().verify(rs256(key=attacker_key(), payload=claims(exp=NOW - 60)))
    assert caught.value.description == "The access token is invalid"  # signature first


def test_a_token_as_large_as_allowed_is_read() -> None:
    token = rs256()
    check = JWTVerifier(
        StaticKeys(verification_key(rsa_key(), kid=KID)),
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=clock(),
        max_token_bytes=len(token),
    )
    assert check.verify(token)
    with pytest.raises(AuthenticationFailed, match="more than"):
        check.verify(rs256(sub="user-10"))


def test_hand_made_signatures_agree_with_pyjwt() -> None:
    token = jwt.encode({"a": 1}, SECRET, "HS256")
    assert token.split(".")[2] == hs_sign(token.rsplit(".", 1)[0])
    token = jwt.encode(claims(), rsa_key(), "RS256", headers={"kid": KID})
    assert token.split(".")[2] == rs_sign(token.rsplit(".", 1)[0])
