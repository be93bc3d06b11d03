"""JWT verification, secure by default, and the JWT `Authenticator`.

`JWTVerifier` parses a compact JWS once and checks it in this order, each step refusing with
`AuthenticationFailed` (never another exception):

1. size: at most ``max_token_bytes`` (8 KiB) before anything is parsed;
2. shape: ASCII, exactly three base64url segments (no padding, canonical final character),
   a JSON object header and payload (``NaN``/``Infinity`` refused) -> "malformed";
3. header: ``alg`` one this verifier supports (never ``none``); ``kid``, when present, at
   most 256 characters of ``[A-Za-z0-9._~+=:-]`` (a lookup key, never a path); ``jku``,
   ``x5u``, ``jwk`` and ``x5c`` refused (a token never chooses its own key), ``crit`` and
   ``b64`` refused (no extension is understood); ``typ`` checked when configured;
4. key: looked up by ``kid`` and the (not yet verified) ``iss`` in the `KeySource`; the
   token's ``alg`` must be one the *key* is bound to and the key material must be of that
   algorithm's type (no HS/RS confusion, whatever the source);
5. signature, with pyjwt's algorithm implementations on the prepared key;
6. claims: the required ones present (``exp`` by default); ``exp``, ``nbf`` and ``iat``
   numbers, checked against the injected clock with ``leeway``; ``iss`` among the configured
   issuers and equal to the key's own issuer when the key has one; ``aud`` meeting the
   configured audiences, and refused when the token names an audience but none is
   configured (RFC 7519 section 4.1.3); ``sub`` a string when present.

Every step runs on the token as parsed in step 2, so a token is decoded once. A verified
token's claims are kept in a `TokenCache` (keyed by the whole token, until its ``exp`` and
at most ``cache_max_age``), so a repeat token costs a dictionary lookup.

Errors: ``invalid_token`` (HTTP 401) for everything, a token that is not a JWS at all
included (RFC 6750 section 3.1 lists "malformed" among invalid tokens; ``invalid_request``
is the middleware's, for a malformed request). ``description`` only ever says "malformed",
"invalid" or "expired"; the message (for logs) says which check failed.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType, UnionType
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.gateway.keys import KeySource, VerificationKey
from sysdesign_kit.gateway.static_keys import ASYMMETRIC_PREFIXES, HMAC_MIN_BYTES, KID_PATTERN
from sysdesign_kit.gateway.token_cache import TokenCache
from sysdesign_kit.principal import Principal

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_TOKEN_BYTES",
    "SUPPORTED_ALGORITHMS",
    "JWTAuthenticator",
    "JWTVerifier",
]

#: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``: enough for hosts whose
#: clocks drift between NTP syncs, small next to any token lifetime worth issuing.
DEFAULT_LEEWAY: Final = 30.0
#: The largest token read at all (RFC 9068 access tokens are typically under 2 KiB).
DEFAULT_MAX_TOKEN_BYTES: Final = 8192

_RSA = (rsa.RSAPublicKey, None)
# Each algorithm with the key material it needs (and the EC curve, when it is fixed).
_KEY_TYPES: Final[dict[str, tuple[type | UnionType, str | None]]] = {
    "HS256": (bytes, None),
    "HS384": (bytes, None),
    "HS512": (bytes, None),
    "RS256": _RSA,
    "RS384": _RSA,
    "RS512": _RSA,
    "PS256": _RSA,
    "PS384": _RSA,
    "PS512": _RSA,
    "ES256": (ec.EllipticCurvePublicKey, "secp256r1"),
    "ES384": (ec.EllipticCurvePublicKey, "secp384r1"),
    "ES512": (ec.EllipticCurvePublicKey, "secp521r1"),
    "EdDSA": (ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, None),
}
#: The JWS algorithms a verifier can accept (``none`` never).
SUPPORTED_ALGORITHMS: Final = frozenset(_KEY_TYPES)
_PYJWT: Final[dict[str, Algorithm]] = {
    name: alg for name, alg in get_default_algorithms().items() if name in SUPPORTED_ALGORITHMS
}

# Header parameters that make a token name its own key (jku, x5u: a URL; jwk, x5c: the key
# itself) or demand an extension we do not implement (crit; b64 of RFC 7797).
_REFUSED_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})

_MALFORMED = "The access token is malformed"
_INVALID = "The access token is invalid"
_EXPIRED = "The access token expired"

# base64url -> standard alphabet in one translate; "+", "/" and "=" become "!", which the
# strict decoder refuses, so only the URL-safe alphabet without padding is accepted.
_B64_TABLE: Final = bytes.maketrans(b"-_+/=", b"+/!!!")
_B64URL: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# With 2 or 3 characters in the last quantum, the unused low bits must be zero: one
# encoding per byte string (no malleable signatures).
_CANONICAL_LAST: Final = {
    2: frozenset(_B64URL[0::16]),
    3: frozenset(_B64URL[0::4]),
}
_PADDING: Final = (b"", b"", b"==", b"=")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _b64decode(segment: bytes) -> bytes:
    tail = len(segment) & 3
    if tail:
        if tail == 1 or segment[-1] not in _CANONICAL_LAST[tail]:
            raise ValueError("not canonical base64url")
        return binascii.a2b_base64(segment.translate(_B64_TABLE) + _PADDING[tail], strict_mode=True)
    return binascii.a2b_base64(segment.translate(_B64_TABLE), strict_mode=True)


def _json_object(segment: bytes) -> Any:
    value = _JSON.decode(_b64decode(segment).decode("utf-8"))
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    return value


def _malformed(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"malformed token: {reason}", error="invalid_token", description=_MALFORMED
    )


def _invalid(reason: str, description: str = _INVALID) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"invalid token: {reason}", error="invalid_token", description=description
    )


def _is_time(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _normal_typ(typ: str) -> str:
    typ = typ.lower()
    return typ[12:] if typ.startswith("application/") else typ


def _names(value: str | Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset((value,) if isinstance(value, str) else value)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ConfigurationError(f"{what} must be one or more non-empty strings, got {value!r}")
    return names


# What `_parse` hands on: alg, kid, signing input, signature, claims, iss (unverified).
_Parsed = tuple[str, str | None, bytes, bytes, dict[str, Any], str | None]


class JWTVerifier:
    """Verifies compact JWS tokens against keys from a `KeySource` (see the module doc).

    Args:
        keys: where keys come from (`StaticKeys`, a JWKS source...).
        issuer: the accepted ``iss`` value(s); None accepts any (and requires none).
        audience: the accepted ``aud`` value(s); None refuses tokens that carry ``aud``.
        leeway: seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
        max_token_bytes: longer tokens are refused unread.
        typ: the required ``typ`` header (e.g. ``"at+jwt"`` for RFC 9068 access tokens;
            compared case-insensitively, with or without ``application/``); None: unchecked.
        required_claims: claims that must be present; ``iss`` and ``aud`` are added when
            ``issuer`` and ``audience`` are given. Pass ``()`` to accept tokens without ``exp``.
        algorithms: narrows the algorithms accepted from any key (default: all supported).
        cache_size: how many verified tokens are remembered (0: no cache).
        cache_max_age: the longest a verified token is trusted without a new check (a key
            removed from the source stops being honoured within this time).
        clock: where wall time is read from.

    Raises:
        ConfigurationError: a value above is unusable.
    """

    __slots__ = (
        "_algorithms",
        "_audiences",
        "_cache",
        "_issuers",
        "_keys",
        "_leeway",
        "_max_bytes",
        "_required",
        "_typ",
        "clock",
    )

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        leeway: float = DEFAULT_LEEWAY,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        typ: str | None = None,
        required_claims: Sequence[str] = ("exp",),
        algorithms: Iterable[str] | None = None,
        cache_size: int = 4096,
        cache_max_age: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(keys, KeySource):
            raise ConfigurationError(f"keys must implement KeySource (get, fetch), got {keys!r}")
        if (
            isinstance(leeway, bool)
            or not isinstance(leeway, int | float)
            or not 0 <= leeway <= 3600
        ):
            raise ConfigurationError(f"leeway must be 0..3600 seconds, got {leeway!r}")
        if (
            isinstance(max_token_bytes, bool)
            or not isinstance(max_token_bytes, int)
            or not 64 <= max_token_bytes <= 1024 * 1024
        ):
            raise ConfigurationError(
                f"max_token_bytes must be an int in 64..1048576, got {max_token_bytes!r}"
            )
        if typ is not None and not (isinstance(typ, str) and typ.strip()):
            raise ConfigurationError(f"typ must be a non-empty string or None, got {typ!r}")
        if isinstance(required_claims, str):
            required_claims = (required_claims,)
        accepted = _names(algorithms, "algorithms") or SUPPORTED_ALGORITHMS
        unknown = accepted - SUPPORTED_ALGORITHMS
        if unknown:
            raise ConfigurationError(
                f"algorithms {sorted(unknown)} are not supported; "
                f"choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self._keys = keys
        self._issuers = _names(issuer, "issuer")
        self._audiences = _names(audience, "audience")
        self._leeway = float(leeway)
        self._max_bytes = max_token_bytes
        self._typ = _normal_typ(typ) if typ is not None else None
        required = dict.fromkeys(required_claims)
        if self._issuers is not None:
            required["iss"] = None
        if self._audiences is not None:
            required["aud"] = None
        if not all(isinstance(name, str) and name for name in required):
            raise ConfigurationError(f"required_claims must be names, got {required_claims!r}")
        self._required = tuple(required)
        self._algorithms = {name: _PYJWT[name] for name in sorted(accepted)}
        self._cache: TokenCache[Mapping[str, Any]] | None = (
            TokenCache(max_entries=cache_size, max_age=cache_max_age, clock=clock)
            if cache_size
            else None
        )
        self.clock = clock

    @property
    def cache(self) -> TokenCache[Mapping[str, Any]] | None:
        """The verified-token cache (``clear()`` it after removing a compromised key)."""
        return self._cache

    def verify(self, token: str) -> Mapping[str, Any]:
        """The claims of ``token`` once every check passes (keys looked up without I/O).

        Raises:
            AuthenticationFailed: ``invalid_token``, described as "malformed" when the token
                is not a JWS at all, else "expired" or "invalid".
        """
        cache = self._cache
        if cache is not None and type(token) is str:
            claims = cache.get(token)
            if claims is not None:
                return claims
        parsed = self._parse(token)
        return self._accept(token, parsed, self._keys.get(parsed[1], parsed[5]))

    async def averify(self, token: str) -> Mapping[str, Any]:
        """As `verify`, but an unknown ``kid`` asks the source to refresh (``fetch``)."""
        cache = self._cache
        if cache is not None and type(token) is str:
            claims = cache.get(token)
            if claims is not None:
                return claims
        parsed = self._parse(token)
        key = self._keys.get(parsed[1], parsed[5])
        if key is None:
            key = await self._keys.fetch(parsed[1], parsed[5])
        return self._accept(token, parsed, key)

    def _parse(self, token: str) -> _Parsed:
        """Steps 1-3: size, shape and header, before any key is looked up."""
        if not isinstance(token, str):
            raise _malformed(f"a {type(token).__name__}, not a str")
        if len(token) > self._max_bytes:
            raise _malformed(f"{len(token)} characters, more than {self._max_bytes}")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise _malformed("not ASCII") from None
        segments = raw.split(b".")
        if len(segments) != 3:
            raise _malformed(f"{len(segments)} segments, not 3")
        try:
            header = _json_object(segments[0])
            claims = _json_object(segments[1])
            signature = _b64decode(segments[2])
        except (ValueError, RecursionError, binascii.Error) as exc:
            raise _malformed(f"undecodable segment ({exc})") from None
        alg = header.get("alg")
        if type(alg) is not str or alg not in self._algorithms:
            raise _invalid(f"alg {alg!r} not accepted")
        kid = header.get("kid")
        if kid is not None and (type(kid) is not str or not KID_PATTERN.fullmatch(kid)):
            raise _invalid(f"unusable kid {kid!r:.80}")
        if not _REFUSED_HEADERS.isdisjoint(header):
            raise _invalid(
                f"refused header parameter(s) {sorted(_REFUSED_HEADERS & header.keys())}"
            )
        if self._typ is not None:
            typ = header.get("typ")
            if type(typ) is not str or _normal_typ(typ) != self._typ:
                raise _invalid(f"typ {typ!r:.80} is not {self._typ!r}")
        iss = claims.get("iss")
        signing_input = raw[: len(segments[0]) + len(segments[1]) + 1]
        return alg, kid, signing_input, signature, claims, iss if type(iss) is str else None

    def _accept(
        self, token: str, parsed: _Parsed, key: VerificationKey | None
    ) -> Mapping[str, Any]:
        """Steps 4-6: key binding, signature, claims; then remember the token."""
        alg, kid, signing_input, signature, claims, iss = parsed
        if key is None:
            raise _invalid(f"no key for kid {kid!r} and issuer {iss!r:.80}")
        if alg not in key.algorithms:
            raise _invalid(f"alg {alg} is not bound to key {key.kid!r}")
        material: Any = key.key
        expected, curve = _KEY_TYPES[alg]
        # Held again here, whatever the source promised: an HS key must be a long enough
        # secret that is no public key, an asymmetric one of the algorithm's type and curve.
        if expected is bytes:
            unfit = (
                type(material) is not bytes
                or len(material) < HMAC_MIN_BYTES[alg]
                or material.lstrip().startswith(ASYMMETRIC_PREFIXES)
            )
        else:
            unfit = not isinstance(material, expected) or (
                curve is not None and key.key.curve.name != curve
            )
        if unfit:
            raise _invalid(f"key {key.kid!r} is a {type(material).__name__}, unfit for {alg}")
        try:
            valid = self._algorithms[alg].verify(signing_input, material, signature)
        except Exception as exc:  # a malformed signature must not surface as a 500
            raise _invalid(f"signature check failed ({exc!r:.80})") from None
        if not valid:
            raise _invalid(f"bad {alg} signature (key {key.kid!r})")
        self._check_claims(claims, key)
        verified: Mapping[str, Any] = MappingProxyType(claims)
        cache = self._cache
        if cache is not None:
            cache.put(token, verified, claims.get("exp"))
        return verified

    def _check_claims(self, claims: dict[str, Any], key: VerificationKey) -> None:
        for name in self._required:
            if claims.get(name) is None:
                raise _invalid(f"missing claim {name!r}")
        now = self.clock.time()
        leeway = self._leeway
        exp = claims.get("exp")
        if exp is not None:
            if not _is_time(exp):
                raise _invalid(f"exp {exp!r:.40} is not a number")
            if now - leeway >= exp:
                raise _invalid(f"expired at {exp} (now {now:.0f})", _EXPIRED)
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_time(nbf):
                raise _invalid(f"nbf {nbf!r:.40} is not a number")
            if now + leeway < nbf:
                raise _invalid(f"not valid before {nbf} (now {now:.0f})")
        iat = claims.get("iat")
        if iat is not None:
            if not _is_time(iat):
                raise _invalid(f"iat {iat!r:.40} is not a number")
            if now + leeway < iat:
                raise _invalid(f"issued in the future at {iat} (now {now:.0f})")
        iss = claims.get("iss")
        if iss is not None and type(iss) is not str:
            raise _invalid("iss is not a string")
        if self._issuers is not None and iss not in self._issuers:
            raise _invalid(f"issuer {iss!r:.80} not accepted")
        if key.issuer is not None and iss != key.issuer:
            raise _invalid(f"key {key.kid!r} does not vouch for issuer {iss!r:.80}")
        if "aud" in claims:
            self._check_audience(claims["aud"])
        sub = claims.get("sub")
        if sub is not None and type(sub) is not str:
            raise _invalid("sub is not a string")

    def _check_audience(self, aud: object) -> None:
        audiences = self._audiences
        if audiences is None:
            raise _invalid("the token names an audience but none is configured")
        if type(aud) is str:
            if aud in audiences:
                return
        elif type(aud) is list and all(type(one) is str for one in aud):
            if not audiences.isdisjoint(aud):
                return
        else:
            raise _invalid("aud is neither a string nor a list of strings")
        raise _invalid(f"audience {aud!r:.80} not accepted")


class JWTAuthenticator:
    """The bearer-token `Authenticator` for JWTs: verified claims become a `Principal`.

    Principals are cached by token (until ``exp``, at most ``cache_max_age``), so a repeat
    token costs one dictionary lookup.

    Args:
        verifier: checks the token.
        subject_claim: the claim naming the caller (a non-empty string, required).
        tier_claim: the claim naming the caller's plan; absent means ``default_tier``.
        default_tier: the tier of a token without ``tier_claim``.
        roles_claim: roles as a list of strings or a space-separated string.
        scope_claims: the claims tried in order for scopes, each a space-separated string
            (``scope``, RFC 8693) or a list of strings (``scp``).
        tenant_claim: the claim naming the tenant (None: principals carry no tenant).
        cache_size: how many principals are remembered (0: none).
        cache_max_age: the longest a principal is reused without verifying again.

    Raises:
        ConfigurationError: a value above is unusable.
    """

    __slots__ = (
        "_cache",
        "_default_tier",
        "_roles",
        "_scopes",
        "_subject",
        "_tenant",
        "_tier",
        "method",
        "verifier",
    )

    def __init__(
        self,
        verifier: JWTVerifier,
        *,
        subject_claim: str = "sub",
        tier_claim: str = "tier",
        default_tier: str = "free",
        roles_claim: str = "roles",
        scope_claims: Sequence[str] = ("scope", "scp"),
        tenant_claim: str | None = None,
        cache_size: int = 4096,
        cache_max_age: float = 60.0,
    ) -> None:
        if not isinstance(verifier, JWTVerifier):
            raise ConfigurationError(f"verifier must be a JWTVerifier, got {verifier!r}")
        if isinstance(scope_claims, str):
            scope_claims = (scope_claims,)
        names = (subject_claim, tier_claim, default_tier, roles_claim, *scope_claims)
        if not all(isinstance(name, str) and name for name in names) or (
            tenant_claim is not None and not (isinstance(tenant_claim, str) and tenant_claim)
        ):
            raise ConfigurationError("claim names and default_tier must be non-empty strings")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.method = "jwt"
        self.verifier = verifier
        self._subject = subject_claim
        self._tier = tier_claim
        self._default_tier = default_tier
        self._roles = roles_claim
        self._scopes = tuple(scope_claims)
        self._tenant = tenant_claim
        self._cache: TokenCache[Principal] | None = (
            TokenCache(max_entries=cache_size, max_age=cache_max_age, clock=verifier.clock)
            if cache_size
            else None
        )

    @property
    def cache(self) -> TokenCache[Principal] | None:
        """The principal cache."""
        return self._cache

    def clear_cache(self) -> None:
        """Forget every remembered token, here and in the verifier (e.g. after removing a
        compromised key): each token is verified again on its next use."""
        if self._cache is not None:
            self._cache.clear()
        if self.verifier.cache is not None:
            self.verifier.cache.clear()

    def remembered(self, credential: str) -> Principal | None:
        """The principal an earlier `authenticate` of ``credential`` proved, while the cache
        still holds it (before the token's ``exp``); None otherwise. Never verifies."""
        cache = self._cache
        return cache.get(credential) if cache is not None else None

    async def authenticate(self, credential: str) -> Principal:
        """The principal the JWT ``credential`` proves.

        Raises:
            AuthenticationFailed: as `JWTVerifier.verify`, or ``invalid_token`` when a claim
                the principal needs is missing or of the wrong type.
        """
        cache = self._cache
        if cache is not None and type(credential) is str:
            principal = cache.get(credential)
            if principal is not None:
                return principal
        claims = await self.verifier.averify(credential)
        principal = self.principal(claims)
        if cache is not None:
            cache.put(credential, principal, claims.get("exp"))
        return principal

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The `Principal` verified ``claims`` describe.

        Raises:
            AuthenticationFailed: ``invalid_token`` when a claim is missing or mistyped.
        """
        subject = claims.get(self._subject)
        if type(subject) is not str or not subject:
            raise _invalid(f"claim {self._subject!r} is not a non-empty string")
        tier = claims.get(self._tier, self._default_tier)
        if type(tier) is not str or not tier:
            raise _invalid(f"claim {self._tier!r} is not a non-empty string")
        scopes: frozenset[str] = frozenset()
        for name in self._scopes:
            value = claims.get(name)
            if value is not None:
                scopes = _claim_names(value, name)
                break
        tenant = None
        if self._tenant is not None:
            tenant = claims.get(self._tenant)
            if tenant is not None and type(tenant) is not str:
                raise _invalid(f"claim {self._tenant!r} is not a string")
        return Principal(
            subject,
            tier,
            scopes,
            _claim_names(claims.get(self._roles), self._roles),
            tenant,
            "jwt",
            claims,
        )


def _claim_names(value: object, name: str) -> frozenset[str]:
    """Roles or scopes from a space-separated string or a list of strings."""
    if value is None:
        return frozenset()
    if type(value) is str:
        return frozenset(value.split())
    if type(value) is list and all(type(item) is str for item in value):
        return frozenset(value)
    raise _invalid(f"claim {name!r} is neither a string nor a list of strings")
