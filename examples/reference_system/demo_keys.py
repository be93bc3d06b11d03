"""The demo's token issuer: one RS256 key that signs demo tokens, and its public JWKS.

The contract a user tests the running demo against (issue 6):

- tokens are RS256, issuer ``sysdesign-kit-demo``, audience ``reference-system``;
- claims ``sub``, ``tier`` (``free`` or ``premium``; no token at all is anonymous),
  ``roles`` (a list), ``scope`` (space-separated), ``exp``, ``iat``, ``iss``, ``aud``;
- the public key is served at ``/.well-known/jwks.json`` with its ``kid`` (the RFC 7638
  thumbprint of the key, so the same PEM always gets the same ``kid``), ``alg`` and ``use``.

The key comes from a PEM file (``--jwt-key PATH``) or is generated when the process starts.
A generated key lives only as long as its process: ``sysdesign-kit demo token`` and
``sysdesign-kit demo --serve`` agree on tokens only when both are given the same
``--jwt-key`` (``--serve`` also prints a sample token per tier signed with its own key).

Never use a demo key, or tokens minted with one, for anything real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "DEFAULT_TTL",
    "ISSUER",
    "JWKS_PATH",
    "TIERS",
    "DemoKeys",
    "default_keys",
]

ISSUER = "sysdesign-kit-demo"
AUDIENCE = "reference-system"
ALGORITHM = "RS256"
JWKS_PATH = "/.well-known/jwks.json"
#: The tiers a token may carry; anonymous is the absence of a token.
TIERS = ("free", "premium")
#: A minted token's lifetime in seconds unless asked otherwise.
DEFAULT_TTL = 3600
_MIN_BITS = 2048
#: Scope tokens and role names: RFC 6749's scope-token charset minus the quote and backslash.
_WORD = re.compile(r"[!#-\[\]-~]+")


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _words(kind: str, words: Iterable[str]) -> list[str]:
    listed = list(dict.fromkeys(words))  # keeps order, drops repeats
    for word in listed:
        if not _WORD.fullmatch(word):
            raise ConfigurationError(
                f"{kind} {word!r} must be printable ASCII without spaces, quotes or backslashes"
            )
    return listed


class DemoKeys:
    """An RSA private key that mints the demo's tokens, and the JWKS publishing it.

    Args:
        private_key: an RSA key of at least 2048 bits.

    Raises:
        ConfigurationError: the key is not RSA or is shorter than 2048 bits.
    """

    def __init__(self, private_key: Any) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ConfigurationError(
                f"the demo signs RS256: its key must be an RSA private key, "
                f"not {type(private_key).__name__}"
            )
        if private_key.key_size < _MIN_BITS:
            raise ConfigurationError(
                f"the demo's RSA key has {private_key.key_size} bits; at least {_MIN_BITS} needed"
            )
        self.private_key: rsa.RSAPrivateKey = private_key
        self.public_key: rsa.RSAPublicKey = private_key.public_key()
        numbers = self.public_key.public_numbers()
        n, e = _b64(numbers.n), _b64(numbers.e)
        # RFC 7638: SHA-256 over the required members, sorted, no whitespace.
        canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("ascii")).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        self._jwk = {"kty": "RSA", "kid": self.kid, "alg": ALGORITHM, "use": "sig", "n": n, "e": e}
        # Served as is on every request: the key never changes while the process runs.
        self._jwks_body = json.dumps({"keys": [self._jwk]}, separators=(",", ":")).encode()

    @classmethod
    def generate(cls) -> DemoKeys:
        """A fresh 2048-bit key (about 0.1 s), living as long as the process."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=_MIN_BITS))

    @classmethod
    def from_pem(cls, path: str | Path) -> DemoKeys:
        """The key in a PEM file (PKCS#1 or PKCS#8, unencrypted), e.g. made with
        ``openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out demo-key.pem``.

        Raises:
            ConfigurationError: the file cannot be read or holds no usable RSA private key.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the JWT key {str(path)!r}: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{str(path)!r} is not an unencrypted PEM private key ({exc})"
            ) from exc
        return cls(key)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (to hand to ``--jwt-key``)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``kid``, ``alg``, ``use``, ``n``, ``e``)."""
        return dict(self._jwk)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set served at ``/.well-known/jwks.json``."""
        return {"keys": [self.jwk()]}

    def mint(
        self,
        *,
        tier: str = "free",
        roles: Iterable[str] = (),
        scope: Iterable[str] | str = ("read",),
        sub: str | None = None,
        ttl: int = DEFAULT_TTL,
        now: float | None = None,
    ) -> str:
        """Sign a demo token.

        Args:
            tier: ``free`` or ``premium``.
            roles: role names (``admin`` may delete products).
            scope: scope tokens, as an iterable or one space-separated string.
            sub: the subject; ``demo-<tier>-<random>`` when not given.
            ttl: seconds until ``exp`` (at least 1).
            now: the ``iat`` as a Unix time (default: now).

        Raises:
            ConfigurationError: an unknown tier, a ttl below 1, or a scope token, role or
                subject that is empty or holds spaces, quotes or control characters.
        """
        if tier not in TIERS:
            raise ConfigurationError(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
        if ttl < 1:
            raise ConfigurationError(f"ttl must be at least 1 second, not {ttl}")
        scopes = _words("scope", scope.split() if isinstance(scope, str) else scope)
        role_list = _words("role", roles)
        subject = sub if sub is not None else f"demo-{tier}-{uuid.uuid4().hex[:8]}"
        _words("sub", [subject])
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": subject,
            "tier": tier,
            "roles": role_list,
            "scope": " ".join(scopes),
            "iat": issued,
            "exp": issued + ttl,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    async def _serve_jwks(self, request: Request) -> Response:
        return Response(
            self._jwks_body,
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @property
    def routes(self) -> list[BaseRoute]:
        """``GET /.well-known/jwks.json``: the public key only."""
        return [Route(JWKS_PATH, self._serve_jwks, methods=["GET"], name="jwks")]


@cache
def default_keys() -> DemoKeys:
    """The process's own generated key, made on first use and shared by every app after."""
    return DemoKeys.generate()
