"""Keys and JWKs for the JWKS tests: made once per session (RSA generation is slow)."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@functools.cache
def private_key(kind: str, index: int = 0) -> PrivateKey:
    """A private key of ``kind`` ("RSA", "P-256", "P-384", "P-521", "Ed25519", "Ed448");
    ``index`` tells apart several keys of one kind."""
    del index  # part of the cache key only
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "RSA-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the key that must be refused
    if kind == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "Ed448":
        return ed448.Ed448PrivateKey.generate()
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def public_jwk(key: PrivateKey, kid: str | None, **members: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` and any extra ``members``."""
    return _jwk(key.public_key(), kid, **members)


def private_jwk(key: PrivateKey, kid: str | None, **members: Any) -> dict[str, Any]:
    """The JWK of the private key itself (what a JWKS must never publish)."""
    return _jwk(key, kid, **members)


def _jwk(key: Any, kid: str | None, **members: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(key, as_dict=True)
    data.pop("key_ops", None)
    if kid is not None:
        data["kid"] = kid
    data.update(members)
    return data


def jwks(*keys: dict[str, Any]) -> bytes:
    """A JWK Set document holding ``keys``."""
    return json.dumps({"keys": list(keys)}).encode()


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key: PrivateKey, alg: str, kid: str | None, **claims: Any) -> str:
    """A JWS signed with ``key``."""
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode({"sub": "alice", **claims}, key, algorithm=alg, headers=headers)
