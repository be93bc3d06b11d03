"""A JSON Web Key Set (RFC 7517) read into `VerificationKey` objects, refusing what is unsafe.

Each key is bound to the algorithms its type allows, whatever else the set claims:

========================  ==============================================
``kty`` / ``crv``         algorithms
========================  ==============================================
``RSA`` (>= 2048 bits)    RS256, RS384, RS512, PS256, PS384, PS512
``EC`` P-256              ES256
``EC`` P-384              ES384
``EC`` P-521              ES512
``OKP`` Ed25519 / Ed448   EdDSA
========================  ==============================================

A key's ``alg``, when present, narrows that set to itself and must belong to it (an RSA key
labelled ``HS256`` is refused, never reinterpreted). Refused outright: symmetric ``oct`` keys
(a remote set that publishes a shared secret makes it public), keys carrying private
members (``d`` and the RSA CRT parameters: someone published a private key), unknown key
types and curves (X25519 is for key agreement), and malformed values. Skipped quietly: keys
whose ``use`` is not ``sig`` or whose ``key_ops`` lack ``verify``. One bad key does not
spoil the others; `parse_jwks` says why each was left out.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sysdesign_kit.gateway.keys import VerificationKey
from sysdesign_kit.gateway.static_keys import KID_PATTERN, MAX_KID_LENGTH, RSA_ALGORITHMS

__all__ = ["InvalidJWKS", "ParsedJWKS", "jwk_to_key", "parse_jwks"]

_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int, str]] = {
    # crv -> (curve, coordinate bytes, the one algorithm it signs with)
    "P-256": (ec.SECP256R1(), 32, "ES256"),
    "P-384": (ec.SECP384R1(), 48, "ES384"),
    "P-521": (ec.SECP521R1(), 66, "ES512"),
}
_OKP_CURVES = {"Ed25519": 32, "Ed448": 57}
# Members that only a private (or symmetric) key has; their presence is a leak, not a key.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_MAX_MEMBER = 2048  # base64url characters: a 8192-bit modulus needs 1366
_MAX_KEYS = 100


class InvalidJWKS(ValueError):
    """The document is not a usable JWK Set; the message says why (safe to log)."""


class _Refused(ValueError):
    """One key of the set is left out; the message says why."""


@dataclass(frozen=True, slots=True)
class ParsedJWKS:
    """What `parse_jwks` made of a document.

    Attributes:
        keys: the usable keys by ``kid``; a set of exactly one key also holds it under
            None, for tokens that carry no ``kid``.
        skipped: one line per key left out (its position, ``kid`` and the reason).
    """

    keys: Mapping[str | None, VerificationKey]
    skipped: tuple[str, ...]


def parse_jwks(
    document: bytes | str | Mapping[str, Any],
    *,
    issuer: str | None = None,
    min_rsa_bits: int = 2048,
) -> ParsedJWKS:
    """Read a JWK Set document into verification keys.

    Args:
        document: the JSON text (or an already decoded object).
        issuer: stamped on every key (`VerificationKey.issuer`).
        min_rsa_bits: RSA moduli shorter than this are refused.

    Raises:
        InvalidJWKS: not JSON, not an object with a ``keys`` list, more than 100 keys, or
            not one usable key in it (a set that suddenly holds none is far likelier a
            broken endpoint than a real rotation, so callers keep their old keys).
    """
    if isinstance(document, bytes | str):
        try:
            data = json.loads(document)
        except (ValueError, RecursionError) as exc:
            raise InvalidJWKS("not JSON") from exc
    else:
        data = document
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise InvalidJWKS('not a JWK Set: expected an object with a "keys" list')
    entries: list[Any] = data["keys"]
    if len(entries) > _MAX_KEYS:
        raise InvalidJWKS(f"{len(entries)} keys, more than {_MAX_KEYS}")
    keys: dict[str | None, VerificationKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        kid = entry.get("kid") if isinstance(entry, Mapping) else None
        label = f"key {index}" + (f" (kid {kid!r})" if isinstance(kid, str) else "")
        try:
            key = jwk_to_key(entry, issuer=issuer, min_rsa_bits=min_rsa_bits)
        except _Refused as exc:
            skipped.append(f"{label}: {exc}")
            continue
        if key is None:
            skipped.append(f"{label}: not for verifying signatures")
        elif key.kid in keys:
            # Two keys answering to one kid: neither is trustworthy as the one meant.
            skipped.append(f"{label}: duplicate kid")
            keys[key.kid] = _DUPLICATE
        else:
            keys[key.kid] = key
    keys = {kid: key for kid, key in keys.items() if key is not _DUPLICATE}
    if not keys:
        raise InvalidJWKS("no usable key in the set: " + "; ".join(skipped or ["it is empty"]))
    if len(keys) == 1:
        keys[None] = next(iter(keys.values()))
    return ParsedJWKS(keys, tuple(skipped))


_DUPLICATE = VerificationKey(kid=None, algorithms=frozenset(), key=None)


def jwk_to_key(
    jwk: Any, *, issuer: str | None = None, min_rsa_bits: int = 2048
) -> VerificationKey | None:
    """One JWK as a `VerificationKey`; None for a key not meant for verifying signatures.

    Raises:
        ValueError: the key is refused (the message says why).
    """
    if not isinstance(jwk, Mapping):
        raise _Refused("not a JSON object")
    for member in _PRIVATE_MEMBERS:
        if member in jwk:
            kty = jwk.get("kty")
            if kty == "oct":
                raise _Refused("symmetric (oct) keys are never taken from a key set")
            raise _Refused(f"carries private key material ({member!r})")
    use = jwk.get("use")
    if use is not None and use != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid)):
        # The verifier refuses tokens naming any other kid: such a key could never be used.
        raise _Refused(f"kid must be 1 to {MAX_KID_LENGTH} characters of [A-Za-z0-9._~+=:-]")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise _Refused("alg is not a string")
    kty = jwk.get("kty")
    if kty == "RSA":
        key: Any = _rsa(jwk, min_rsa_bits)
        allowed = RSA_ALGORITHMS
    elif kty == "EC":
        key, allowed = _ec(jwk)
    elif kty == "OKP":
        key, allowed = _okp(jwk)
    elif kty == "oct":
        raise _Refused("symmetric (oct) keys are never taken from a key set")
    else:
        raise _Refused(f"unsupported key type {kty!r}")
    if alg is not None:
        if alg not in allowed:
            raise _Refused(f"alg {alg!r} does not fit a {kty} key")
        allowed = frozenset({alg})
    return VerificationKey(kid=kid, algorithms=allowed, key=key, issuer=issuer)


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise _Refused(f"{name!r} is missing or not a string")
    if len(value) > _MAX_MEMBER or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise _Refused(f"{name!r} is not unpadded base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _rsa(jwk: Mapping[str, Any], min_bits: int) -> rsa.RSAPublicKey:
    n = int.from_bytes(_member(jwk, "n"), "big")
    e = int.from_bytes(_member(jwk, "e"), "big")
    if n.bit_length() < min_bits:
        raise _Refused(f"RSA modulus of {n.bit_length()} bits, fewer than {min_bits}")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise _Refused(f"invalid RSA key: {exc}") from exc


def _ec(jwk: Mapping[str, Any]) -> tuple[ec.EllipticCurvePublicKey, frozenset[str]]:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _EC_CURVES:
        raise _Refused(f"unsupported EC curve {crv!r}")
    curve, size, alg = _EC_CURVES[crv]
    x, y = _member(jwk, "x"), _member(jwk, "y")
    if len(x) != size or len(y) != size:
        raise _Refused(f"{crv} coordinates must be {size} bytes")
    try:
        # from_encoded_point checks that the point lies on the curve.
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError as exc:
        raise _Refused(f"invalid {crv} point") from exc
    return key, frozenset({alg})


def _okp(
    jwk: Mapping[str, Any],
) -> tuple[ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, frozenset[str]]:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _OKP_CURVES:
        raise _Refused(f"unsupported OKP curve {crv!r} (only Ed25519 and Ed448 sign)")
    x = _member(jwk, "x")
    if len(x) != _OKP_CURVES[crv]:
        raise _Refused(f"{crv} keys are {_OKP_CURVES[crv]} bytes")
    try:
        if crv == "Ed25519":
            key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey = (
                ed25519.Ed25519PublicKey.from_public_bytes(x)
            )
        else:
            key = ed448.Ed448PublicKey.from_public_bytes(x)
    except ValueError as exc:
        raise _Refused(f"invalid {crv} key") from exc
    return key, frozenset({"EdDSA"})
