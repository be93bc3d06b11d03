"""Keys given at configuration: HMAC secrets, ``cryptography`` keys, PEM strings and files.

Each key is bound at configuration to the algorithms its type allows; what a token's header
says never widens that set:

==========================  ==================================================  ===========
key                         algorithms                                          default
==========================  ==================================================  ===========
HMAC secret                 HS256 / HS384 / HS512 (secret >= 32 / 48 / 64 B)    HS256
RSA (>= 2048 bits)          RS256 / RS384 / RS512, PS256 / PS384 / PS512        RS256
EC P-256 / P-384 / P-521    ES256 / ES384 / ES512 (the curve's own)             the curve's
Ed25519 / Ed448             EdDSA                                               EdDSA
==========================  ==================================================  ===========

Refused with `ConfigurationError`: an algorithm the key type cannot verify (an RSA key for
HS256 is the HS/RS confusion), ``none``, an HMAC secret shorter than the algorithm's hash
(RFC 7518 section 3.2), an HMAC "secret" that is really a PEM or SSH public key, an RSA key
under 2048 bits, a ``kid`` outside the characters tokens may carry. A private key is
accepted and only its public half kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.keys import VerificationKey

__all__ = [
    "ASYMMETRIC_PREFIXES",
    "HMAC_MIN_BYTES",
    "KID_PATTERN",
    "MAX_KID_LENGTH",
    "RSA_ALGORITHMS",
    "StaticKeys",
    "hmac_key",
    "pem_file_key",
    "pem_key",
    "verification_key",
]

#: The longest ``kid`` a token may carry.
MAX_KID_LENGTH = 256
#: The characters a ``kid`` may hold: base64/base64url, hex, UUIDs, dotted names; no ``/``
#: or ``\\``, so a ``kid`` can never read as a path.
KID_PATTERN = re.compile(r"[A-Za-z0-9._~+=:-]{1,%d}" % MAX_KID_LENGTH)  # noqa: UP031

#: The shortest HMAC secret each algorithm accepts: its hash size (RFC 7518 section 3.2).
HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
#: What an RSA key may verify (each key is narrowed to the ones chosen for it).
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_MIN_BITS = 2048
#: How a PEM, SSH or DER public key starts: bytes that are never taken as an HMAC secret.
ASYMMETRIC_PREFIXES: Final = (b"-----BEGIN", b"ssh-", b"ecdsa-sha2-", b"\x30\x82")

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | (ed448.Ed448PublicKey)
)


def _check_kid(kid: str | None) -> None:
    if kid is not None and not (isinstance(kid, str) and KID_PATTERN.fullmatch(kid)):
        raise ConfigurationError(
            f"kid must be 1..{MAX_KID_LENGTH} characters of [A-Za-z0-9._~+=:-], got {kid!r}"
        )


def _chosen(algorithms: Iterable[str] | None, default: str, what: str) -> frozenset[str]:
    if algorithms is None:
        return frozenset({default})
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    chosen = frozenset(algorithms)
    if not chosen:
        raise ConfigurationError(f"algorithms for {what} must not be empty")
    return chosen


def _refuse_unfit(chosen: frozenset[str], allowed: frozenset[str], what: str) -> None:
    unfit = chosen - allowed
    if unfit:
        raise ConfigurationError(
            f"{what} cannot verify {sorted(unfit)}; it allows only {sorted(allowed)}"
        )


def hmac_key(
    secret: bytes | str,
    *,
    kid: str | None = None,
    algorithms: Iterable[str] | None = None,
    issuer: str | None = None,
) -> VerificationKey:
    """A shared-secret key for HS256/384/512 (default HS256 only).

    Args:
        secret: at least as many bytes as the longest chosen algorithm's hash (32 for HS256,
            48 for HS384, 64 for HS512); a str is encoded as UTF-8.
        kid: the ``kid`` tokens name this key by (None: any token of ``issuer``).
        algorithms: the HS algorithms this key verifies.
        issuer: the only ``iss`` this key may vouch for (None: any).

    Raises:
        ConfigurationError: the secret is too short or looks like an asymmetric key, an
            algorithm is not HS*, or the ``kid`` is unusable.
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(raw, bytes):
        raise ConfigurationError(f"an HMAC secret must be bytes or str, got {type(secret)!r}")
    chosen = _chosen(algorithms, "HS256", "an HMAC secret")
    _refuse_unfit(chosen, frozenset(HMAC_MIN_BYTES), "an HMAC secret")
    if raw.lstrip().startswith(ASYMMETRIC_PREFIXES):
        # Verifying HS* with a public key's bytes as the secret is the HS/RS confusion.
        raise ConfigurationError("the HMAC secret looks like a public key; use pem_key()")
    needed = max(HMAC_MIN_BYTES[alg] for alg in chosen)
    if len(raw) < needed:
        raise ConfigurationError(
            f"the HMAC secret is {len(raw)} bytes; {'/'.join(sorted(chosen))} needs at least "
            f"{needed} (RFC 7518 section 3.2)"
        )
    _check_kid(kid)
    return VerificationKey(kid=kid, algorithms=chosen, key=raw, issuer=issuer)


def verification_key(
    key: Any,
    *,
    kid: str | None = None,
    algorithms: Iterable[str] | None = None,
    issuer: str | None = None,
) -> VerificationKey:
    """A `VerificationKey` for a ``cryptography`` key (public, or private: its public half).

    Args:
        key: an RSA (>= 2048 bits), EC (P-256/384/521), Ed25519 or Ed448 key.
        kid: the ``kid`` tokens name this key by (None: any token of ``issuer``).
        algorithms: what the key verifies; must suit the key type (default: RS256 for RSA,
            the curve's ES* for EC, EdDSA for Ed25519/Ed448).
        issuer: the only ``iss`` this key may vouch for (None: any).

    Raises:
        ConfigurationError: the key type is not supported, is too weak, or cannot verify a
            chosen algorithm; or the ``kid`` is unusable.
    """
    if isinstance(key, bytes | str):
        raise ConfigurationError(
            "verification_key() takes a cryptography key; use hmac_key() for a secret and "
            "pem_key() for PEM text"
        )
    public: Any = (
        key.public_key()
        if isinstance(
            key,
            rsa.RSAPrivateKey
            | ec.EllipticCurvePrivateKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PrivateKey,
        )
        else key
    )
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < _RSA_MIN_BITS:
            raise ConfigurationError(
                f"the RSA key has {public.key_size} bits; at least {_RSA_MIN_BITS} are needed"
            )
        chosen = _chosen(algorithms, "RS256", "an RSA key")
        _refuse_unfit(chosen, RSA_ALGORITHMS, "an RSA key")
    elif isinstance(public, ec.EllipticCurvePublicKey):
        own = _EC_ALGORITHM.get(public.curve.name)
        if own is None:
            raise ConfigurationError(f"EC curve {public.curve.name} is not supported")
        chosen = _chosen(algorithms, own, f"an EC {public.curve.name} key")
        _refuse_unfit(chosen, frozenset({own}), f"an EC {public.curve.name} key")
    elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        chosen = _chosen(algorithms, "EdDSA", "an EdDSA key")
        _refuse_unfit(chosen, frozenset({"EdDSA"}), "an EdDSA key")
    else:
        raise ConfigurationError(f"unsupported key type {type(key).__name__}")
    _check_kid(kid)
    return VerificationKey(kid=kid, algorithms=chosen, key=public, issuer=issuer)


def pem_key(
    pem: bytes | str,
    *,
    kid: str | None = None,
    algorithms: Iterable[str] | None = None,
    issuer: str | None = None,
    password: bytes | None = None,
) -> VerificationKey:
    """A `VerificationKey` from PEM text: a public key, a private key or an X.509
    certificate (its subject's key; the certificate itself is not validated).

    Raises:
        ConfigurationError: the text is no PEM key or certificate, or as `verification_key`.
    """
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    loaded: Any = None
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            loaded = x509.load_pem_x509_certificate(data).public_key()
        except ValueError as exc:
            raise ConfigurationError(f"unreadable PEM certificate: {exc}") from None
    elif b"PRIVATE KEY-----" in data:
        try:
            loaded = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"unreadable PEM private key: {exc}") from None
    else:
        try:
            loaded = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigurationError(f"unreadable PEM public key: {exc}") from None
    return verification_key(loaded, kid=kid, algorithms=algorithms, issuer=issuer)


def pem_file_key(
    path: str | PathLike[str],
    *,
    kid: str | None = None,
    algorithms: Iterable[str] | None = None,
    issuer: str | None = None,
    password: bytes | None = None,
) -> VerificationKey:
    """`pem_key` on the contents of the file at ``path``.

    Raises:
        ConfigurationError: the file cannot be read, or as `pem_key`.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the PEM file {str(path)!r}: {exc}") from None
    return pem_key(data, kid=kid, algorithms=algorithms, issuer=issuer, password=password)


class StaticKeys:
    """A `KeySource` over keys fixed at configuration.

    A token's ``kid`` and ``iss`` pick the key: first a key with that ``kid`` for that
    issuer, then one with that ``kid`` for any issuer, then a key without ``kid`` (for that
    issuer, then for any). A token without ``kid`` also gets the key when there is exactly
    one. Two different keys with the same ``kid`` and issuer are refused (the same key
    given twice is kept once).

    Args:
        keys: `VerificationKey` objects, e.g. from `hmac_key`, `pem_key`, `verification_key`
            or a JWKS document.

    Raises:
        ConfigurationError: no key, a duplicate (``kid``, issuer), or a key whose algorithms
            do not suit its material.
    """

    __slots__ = ("_keys", "_sole")

    def __init__(self, *keys: VerificationKey) -> None:
        if not keys:
            raise ConfigurationError("StaticKeys needs at least one key")
        table: dict[tuple[str | None, str | None], VerificationKey] = {}
        for key in keys:
            if not isinstance(key, VerificationKey):
                raise ConfigurationError(f"expected a VerificationKey, got {key!r}")
            _recheck(key)
            slot = (key.kid, key.issuer)
            held = table.setdefault(slot, key)
            if held != key:
                raise ConfigurationError(f"two keys with kid {key.kid!r} for {key.issuer!r}")
        self._keys = table
        self._sole = next(iter(table.values())) if len(table) == 1 else None

    @classmethod
    def from_secret(
        cls,
        secret: bytes | str,
        *,
        kid: str | None = None,
        algorithms: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> StaticKeys:
        """One HMAC secret (see `hmac_key`)."""
        return cls(hmac_key(secret, kid=kid, algorithms=algorithms, issuer=issuer))

    @classmethod
    def from_pem(
        cls,
        pem: bytes | str,
        *,
        kid: str | None = None,
        algorithms: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> StaticKeys:
        """One PEM key or certificate (see `pem_key`)."""
        return cls(pem_key(pem, kid=kid, algorithms=algorithms, issuer=issuer))

    @classmethod
    def from_pem_file(
        cls,
        path: str | PathLike[str],
        *,
        kid: str | None = None,
        algorithms: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> StaticKeys:
        """One PEM file (see `pem_file_key`)."""
        return cls(pem_file_key(path, kid=kid, algorithms=algorithms, issuer=issuer))

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        """The keys held."""
        return tuple(self._keys.values())

    def get(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """The key for ``kid`` and ``issuer``, or None."""
        table = self._keys
        key = table.get((kid, issuer))
        if key is not None:
            return key
        if issuer is not None:
            key = table.get((kid, None))
            if key is not None:
                return key
        if kid is not None:
            key = table.get((None, issuer))
            if key is None and issuer is not None:
                key = table.get((None, None))
            if key is not None:
                return key
        elif self._sole is not None:
            return self._sole
        return None

    async def fetch(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """As `get`: static keys have nothing to refresh."""
        return self.get(kid, issuer)


def _recheck(key: VerificationKey) -> None:
    """Hold a hand-made `VerificationKey` to the same binding rules as the builders."""
    if isinstance(key.key, bytes):
        hmac_key(key.key, kid=key.kid, algorithms=key.algorithms, issuer=key.issuer)
    else:
        verification_key(key.key, kid=key.kid, algorithms=key.algorithms, issuer=key.issuer)
