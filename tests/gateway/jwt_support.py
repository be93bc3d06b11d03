"""Keys, clocks and hand-made tokens shared by the JWT tests (generated once per process)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sysdesign_kit.clock import ManualClock

SECRET = b"0123456789abcdef" * 4  # 64 bytes: enough for HS512
ISSUER = "https://issuer.example"
AUDIENCE = "api"
#: ManualClock()'s wall time.
NOW = 1_700_001_000


def clock() -> ManualClock:
    """A clock whose time() is `NOW`."""
    return ManualClock()


@cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(curve: str = "secp256r1") -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {
        "secp256r1": ec.SECP256R1(),
        "secp384r1": ec.SECP384R1(),
        "secp521r1": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[curve])


@cache
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@cache
def ed448_key() -> ed448.Ed448PrivateKey:
    return ed448.Ed448PrivateKey.generate()


def public_pem(key: Any) -> bytes:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at `NOW`; an override of None removes the claim."""
    base: dict[str, Any] = {
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
        "scope": "read write",
        "roles": ["admin"],
        "tier": "premium",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def hs_sign(signing_input: str, secret: bytes = SECRET, digest: str = "sha256") -> str:
    return b64(hmac.new(secret, signing_input.encode(), getattr(hashlib, digest)).digest())


def craft(header: dict[str, Any], payload: Any, secret: bytes = SECRET) -> str:
    """A token with exactly this header and payload, HMAC-SHA256-signed with ``secret``."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{hs_sign(signing_input, secret)}"


def hs256(payload: Any | None = None, **header: Any) -> str:
    """An HS256 token over `SECRET` (claims() by default) with extra header parameters."""
    return craft({"alg": "HS256", "typ": "JWT", **header}, claims() if payload is None else payload)


def sign(payload: dict[str, Any], key: Any, alg: str, **header: Any) -> str:
    """A token signed by pyjwt."""
    return jwt.encode(payload, key, algorithm=alg, headers=header or None)
