"""parse_jwks / jwk_to_key: each key bound to its type's algorithms, unsafe keys refused."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sysdesign_kit.gateway.jwk import InvalidJWKS, jwk_to_key, parse_jwks
from tests.gateway.jwks_keys import b64, jwks, private_jwk, private_key, public_jwk, token

RSA_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


@pytest.mark.parametrize(
    ("kind", "algorithms", "key_type"),
    [
        ("RSA", RSA_ALGS, rsa.RSAPublicKey),
        ("P-256", {"ES256"}, ec.EllipticCurvePublicKey),
        ("P-384", {"ES384"}, ec.EllipticCurvePublicKey),
        ("P-521", {"ES512"}, ec.EllipticCurvePublicKey),
        ("Ed25519", {"EdDSA"}, ed25519.Ed25519PublicKey),
        ("Ed448", {"EdDSA"}, ed448.Ed448PublicKey),
    ],
)
def test_each_key_type_gets_the_algorithms_of_its_type_and_verifies_a_token(
    kind: str, algorithms: set[str], key_type: type[Any]
) -> None:
    private = private_key(kind)
    key = jwk_to_key(public_jwk(private, "k1"), issuer="https://idp")
    assert key is not None
    assert (key.kid, key.algorithms, key.issuer) == ("k1", frozenset(algorithms), "https://idp")
    public: Any = key.key
    assert isinstance(public, key_type)
    for alg in sorted(algorithms):
        signed = token(private, alg, "k1")
        claims = jwt.decode(signed, public, algorithms=sorted(key.algorithms))
        assert claims["sub"] == "alice"


@pytest.mark.parametrize(
    ("kind", "alg"),
    [("RSA", "PS256"), ("RSA", "RS512"), ("P-256", "ES256"), ("Ed25519", "EdDSA")],
)
def test_an_alg_that_fits_narrows_the_key_to_it(kind: str, alg: str) -> None:
    key = jwk_to_key(public_jwk(private_key(kind), "k", alg=alg))
    assert key is not None
    assert key.algorithms == {alg}


@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("RSA", "HS256"),  # the HS/RS confusion, announced by the set itself
        ("RSA", "ES256"),
        ("RSA", "none"),
        ("P-256", "ES384"),  # a P-256 key cannot make ES384 signatures
        ("P-384", "RS256"),
        ("Ed25519", "ES256"),
        ("Ed25519", "HS512"),
    ],
)
def test_an_alg_that_does_not_fit_the_key_type_is_refused(kind: str, alg: str) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        jwk_to_key(public_jwk(private_key(kind), "k", alg=alg))


@pytest.mark.parametrize("kind", ["RSA", "P-256", "Ed25519"])
def test_private_key_material_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="private key material"):
        jwk_to_key(private_jwk(private_key(kind), "k"))


def _bad(kind: str, **changes: Any) -> dict[str, Any]:
    data = public_jwk(private_key(kind), "k")
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "oct", "k": b64(b"s" * 32), "kid": "k"}, "symmetric"),
        ({"kty": "oct", "kid": "k", "alg": "HS256"}, "symmetric"),
        ({"kty": "OKP", "crv": "X25519", "x": b64(b"x" * 32)}, "unsupported OKP curve"),
        ({"kty": "EC", "crv": "secp256k1", "x": b64(b"x" * 32), "y": b64(b"y" * 32)}, "curve"),
        ({"kty": "XYZ"}, "unsupported key type"),
        ({"n": "AQAB"}, "unsupported key type"),
        (_bad("RSA", n=None), "'n' is missing"),
        (_bad("RSA", n=12345), "'n' is missing or not a string"),
        (_bad("RSA", e="AQ=="), "not unpadded base64url"),
        (_bad("RSA", e="AQ+B"), "not unpadded base64url"),
        (_bad("RSA", e="A" * 3000), "not unpadded base64url"),
        (_bad("RSA", e="Ag"), "invalid RSA key"),  # an even exponent
        (public_jwk(private_key("RSA-1024"), "k"), "fewer than 2048"),
        (_bad("P-256", x=b64(b"\x01" * 31)), "must be 32 bytes"),
        (_bad("P-256", y=b64(b"\x01" * 32)), "invalid P-256 point"),  # not on the curve
        (_bad("Ed25519", x=b64(b"\x01" * 31)), "32 bytes"),
        (_bad("P-256", kid=7), "kid must be 1 to 256 characters"),
        (_bad("P-256", kid=""), "kid must be 1 to 256 characters"),
        (_bad("P-256", kid="k" * 257), "kid must be 1 to 256 characters"),
        (
            _bad("P-256", kid="../keys/k1"),
            "kid must be 1 to 256 characters",
        ),  # tokens could never name it
        (_bad("P-256", alg=256), "alg is not a string"),
        ("not an object", "not a JSON object"),
    ],
)
def test_malformed_and_unsafe_keys_are_refused(jwk: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        jwk_to_key(jwk)


@pytest.mark.parametrize(
    "members",
    [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}],
)
def test_keys_not_meant_for_signatures_are_skipped(members: dict[str, Any]) -> None:
    assert jwk_to_key(public_jwk(private_key("P-256"), "k", **members)) is None


def test_use_sig_and_key_ops_verify_are_accepted() -> None:
    key = jwk_to_key(public_jwk(private_key("P-256"), "k", use="sig", key_ops=["verify"]))
    assert key is not None


def test_a_set_keeps_its_good_keys_and_says_why_others_were_left_out() -> None:
    document = jwks(
        public_jwk(private_key("RSA"), "rsa"),
        {"kty": "oct", "k": b64(b"secret-secret-secret-secret-1234"), "kid": "hmac"},
        private_jwk(private_key("P-256"), "leaked"),
        public_jwk(private_key("Ed25519"), "ed"),
        public_jwk(private_key("P-384"), "enc", use="enc"),
    )
    parsed = parse_jwks(document, issuer="iss")
    assert set(parsed.keys) == {"rsa", "ed"}
    assert all(key.issuer == "iss" for key in parsed.keys.values())
    assert len(parsed.skipped) == 3
    assert "kid 'hmac'" in parsed.skipped[0]
    assert "symmetric" in parsed.skipped[0]
    assert "private" in parsed.skipped[1]
    assert "not for verifying" in parsed.skipped[2]


def test_a_set_of_one_key_also_answers_tokens_without_a_kid() -> None:
    parsed = parse_jwks(jwks(public_jwk(private_key("P-256"), "only")))
    assert parsed.keys[None] is parsed.keys["only"]
    two = parse_jwks(
        jwks(public_jwk(private_key("P-256"), "a"), public_jwk(private_key("P-384"), "b"))
    )
    assert None not in two.keys


def test_a_kid_claimed_twice_is_trusted_for_neither() -> None:
    document = jwks(
        public_jwk(private_key("P-256"), "same"),
        public_jwk(private_key("P-384"), "same"),
        public_jwk(private_key("Ed25519"), "other"),
    )
    parsed = parse_jwks(document)
    assert set(parsed.keys) == {"other", None}
    assert "duplicate kid" in parsed.skipped[0]


def test_a_decoded_document_is_accepted() -> None:
    document = {"keys": [public_jwk(private_key("Ed25519"), "ed")]}
    assert "ed" in parse_jwks(document).keys


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "not a JWK Set"),
        (b'{"keys": {}}', "not a JWK Set"),
        (b'{"key": []}', "not a JWK Set"),
        (b'{"keys": []}', "it is empty"),
        (jwks({"kty": "oct", "k": "c2VjcmV0"}), "no usable key"),
        (json.dumps({"keys": [{"kty": "EC"}] * 101}).encode(), "more than 100"),
    ],
)
def test_garbage_documents_are_rejected_whole(document: bytes, reason: str) -> None:
    with pytest.raises(InvalidJWKS, match=reason):
        parse_jwks(document)
