"""JWTVerifier: every algorithm family round-trips; claims, key binding, typ and the cache."""

from __future__ import annotations

from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.gateway.jwt import JWTVerifier
from sysdesign_kit.gateway.keys import VerificationKey
from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key, verification_key

from .jwt_support import (
    AUDIENCE,
    ISSUER,
    NOW,
    SECRET,
    claims,
    clock,
    craft,
    ec_key,
    ed448_key,
    ed25519_key,
    hs256,
    rsa_key,
    sign,
)


def verifier(key: VerificationKey | None = None, **kwargs: Any) -> JWTVerifier:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "clock": clock()}
    options.update(kwargs)
    return JWTVerifier(StaticKeys(key or hmac_key(SECRET)), **options)


def refused(check: JWTVerifier, token: str, error: str = "invalid_token") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        check.verify(token)
    assert caught.value.error == error
    return caught.value


ROUND_TRIPS = [
    ("HS256", lambda: SECRET[:32], lambda: hmac_key(SECRET[:32])),
    ("HS384", lambda: SECRET[:48], lambda: hmac_key(SECRET[:48], algorithms=["HS384"])),
    ("HS512", lambda: SECRET, lambda: hmac_key(SECRET, algorithms=["HS512"])),
    ("RS256", rsa_key, lambda: verification_key(rsa_key())),
    ("RS512", rsa_key, lambda: verification_key(rsa_key(), algorithms=["RS512"])),
    ("PS256", rsa_key, lambda: verification_key(rsa_key(), algorithms=["PS256"])),
    ("ES256", ec_key, lambda: verification_key(ec_key())),
    ("ES384", lambda: ec_key("secp384r1"), lambda: verification_key(ec_key("secp384r1"))),
    ("ES512", lambda: ec_key("secp521r1"), lambda: verification_key(ec_key("secp521r1"))),
    ("EdDSA", ed25519_key, lambda: verification_key(ed25519_key())),
    ("EdDSA", ed448_key, lambda: verification_key(ed448_key())),
]


@pytest.mark.parametrize(("alg", "signer", "key"), ROUND_TRIPS)
def test_every_algorithm_family_round_trips(alg: str, signer: Any, key: Any) -> None:
    check = verifier(key(), cache_size=0)
    token = sign(claims(), signer(), alg)
    assert dict(check.verify(token)) == claims()


@pytest.mark.parametrize(("alg", "signer", "key"), ROUND_TRIPS)
async def test_averify_agrees(alg: str, signer: Any, key: Any) -> None:
    check = verifier(key(), cache_size=0)
    assert (await check.averify(sign(claims(), signer(), alg)))["sub"] == "user-1"


@pytest.mark.parametrize(
    ("token_alg", "signer", "key"),
    [
        ("PS256", rsa_key, lambda: verification_key(rsa_key())),  # bound to RS256 only
        ("RS384", rsa_key, lambda: verification_key(rsa_key(), algorithms=["RS256"])),
        ("HS512", lambda: SECRET, lambda: hmac_key(SECRET)),  # bound to HS256 only
    ],
)
def test_the_key_decides_the_algorithm(token_alg: str, signer: Any, key: Any) -> None:
    refused(verifier(key()), sign(claims(), signer(), token_alg))


class Fixed:
    """A KeySource handing out one key, however it is bound (no checks of its own)."""

    def __init__(self, key: VerificationKey) -> None:
        self.key = key

    def get(self, kid: str | None, issuer: str | None = None) -> VerificationKey:
        return self.key

    async def fetch(self, kid: str | None, issuer: str | None = None) -> VerificationKey:
        return self.key


PEM = b"-----BEGIN PUBLIC KEY-----" + b"A" * 64


@pytest.mark.parametrize(
    ("key", "token"),
    [
        # The HS/RS confusion: a public key's PEM handed out as an HS256 secret.
        (
            VerificationKey(None, frozenset({"HS256"}), PEM),
            lambda: craft({"alg": "HS256"}, claims(), PEM),
        ),
        (
            VerificationKey(None, frozenset({"HS256"}), b"\n" + PEM),
            lambda: craft({"alg": "HS256"}, claims(), b"\n" + PEM),
        ),
        (
            VerificationKey(None, frozenset({"HS256"}), b"short"),
            lambda: craft({"alg": "HS256"}, claims(), b"short"),
        ),
        (
            VerificationKey(None, frozenset({"HS256"}), "s" * 64),
            lambda: craft({"alg": "HS256"}, claims(), b"s" * 64),
        ),
        (
            VerificationKey(None, frozenset({"ES256"}), PEM),
            lambda: sign(claims(), ec_key(), "ES256"),
        ),
        (
            VerificationKey(None, frozenset({"ES256"}), ec_key("secp384r1").public_key()),
            lambda: sign(claims(), ec_key(), "ES256"),
        ),
        (
            VerificationKey(None, frozenset({"RS256"}), ed25519_key().public_key()),
            lambda: sign(claims(), rsa_key(), "RS256"),
        ),
        (
            VerificationKey(None, frozenset({"none"}), SECRET),
            lambda: craft({"alg": "none"}, claims()).rsplit(".", 1)[0] + ".",
        ),
    ],
)
def test_a_key_source_cannot_smuggle_a_confused_key(key: VerificationKey, token: Any) -> None:
    refused(JWTVerifier(Fixed(key), clock=clock(), audience=AUDIENCE), token())


def test_algorithms_narrow_what_any_key_accepts() -> None:
    check = verifier(verification_key(rsa_key(), algorithms=["RS256", "PS256"]), algorithms="PS256")
    assert check.verify(sign(claims(), rsa_key(), "PS256"))["sub"] == "user-1"
    refused(check, sign(claims(), rsa_key(), "RS256"))


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(1, True), (0, True), (-29.5, True), (-30, False), (-31, False)],  # leeway 30
)
def test_exp_with_leeway_is_exact(offset: float, ok: bool) -> None:
    check = verifier(cache_size=0)
    token = hs256(claims(exp=NOW + offset))
    if ok:
        assert check.verify(token)["exp"] == NOW + offset
    else:
        assert refused(check, token).description == "The access token expired"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_and_iat_in_the_future_tolerate_only_the_leeway(claim: str) -> None:
    check = verifier(cache_size=0)
    assert check.verify(hs256(claims(**{claim: NOW + 30})))
    failure = refused(check, hs256(claims(**{claim: NOW + 30.5})))
    assert failure.description == "The access token is invalid"
    assert verifier(leeway=0).verify(hs256(claims(**{claim: NOW})))
    refused(verifier(leeway=0), hs256(claims(**{claim: NOW + 1})))


def test_time_moves_with_the_injected_clock() -> None:
    manual = ManualClock()
    check = verifier(clock=manual, leeway=0, cache_size=0)
    token = hs256(claims(exp=NOW + 60))
    assert check.verify(token)
    manual.advance(59.9)
    assert check.verify(token)
    manual.advance(0.1)
    refused(check, token)


@pytest.mark.parametrize(
    ("overrides", "kwargs"),
    [
        ({"exp": None}, {}),  # exp required by default
        ({"iss": None}, {}),  # iss required when an issuer is configured
        ({"aud": None}, {}),
        ({"iss": "https://evil.example"}, {}),
        ({"iss": ["https://issuer.example"]}, {}),
        ({"aud": "other"}, {}),
        ({"aud": ["other", "more"]}, {}),
        ({"aud": ["api", 1]}, {}),
        ({"aud": {"api": 1}}, {}),
        ({"aud": "api"}, {"audience": None}),  # an audience nobody configured
        ({"exp": "1700009999"}, {}),
        ({"exp": True}, {}),
        ({"nbf": "0"}, {}),
        ({"iat": [1]}, {}),
        ({"sub": 42}, {}),
        ({"jti": None}, {"required_claims": ("exp", "jti")}),
    ],
)
def test_claims_are_checked(overrides: dict[str, Any], kwargs: dict[str, Any]) -> None:
    refused(verifier(**kwargs), hs256(claims(**overrides)))


def test_issuer_and_audience_may_be_sets() -> None:
    check = verifier(issuer=[ISSUER, "https://other.example"], audience={"api", "admin"})
    assert check.verify(hs256(claims(iss="https://other.example", aud=["x", "admin"])))
    assert check.verify(hs256(claims(aud="api")))


def test_without_issuer_or_audience_configured() -> None:
    check = verifier(issuer=None, audience=None, required_claims=())
    assert check.verify(hs256({"sub": "s"})) == {"sub": "s"}
    refused(check, hs256({"sub": "s", "aud": "api"}))


def test_a_key_bound_to_an_issuer_vouches_for_no_other() -> None:
    keys = StaticKeys(hmac_key(SECRET, kid="k", issuer=ISSUER))
    check = JWTVerifier(keys, clock=clock(), audience=AUDIENCE)
    assert check.verify(hs256(kid="k"))
    refused(check, hs256(claims(iss="https://evil.example"), kid="k"))
    refused(check, hs256(claims(iss=None), kid="k"))


@pytest.mark.parametrize(
    ("typ", "header_typ", "ok"),
    [
        ("at+jwt", "at+jwt", True),
        ("at+jwt", "AT+JWT", True),
        ("at+jwt", "application/at+jwt", True),
        ("application/at+JWT", "at+jwt", True),
        ("at+jwt", "JWT", False),
        ("at+jwt", None, False),
        ("at+jwt", 1, False),
        (None, "anything", True),
    ],
)
def test_typ_is_checked_when_configured(typ: str | None, header_typ: Any, ok: bool) -> None:
    check = verifier(typ=typ)
    header: dict[str, Any] = {"alg": "HS256"}
    if header_typ is not None:
        header["typ"] = header_typ
    token = craft(header, claims())
    if ok:
        assert check.verify(token)
    else:
        refused(check, token)


def test_an_unknown_kid_is_refused_sync_and_fetched_async() -> None:
    refused(verifier(hmac_key(SECRET, kid="k1")), hs256(kid="k2"))


async def test_averify_asks_the_source_to_fetch_an_unknown_kid() -> None:
    asked: list[tuple[str | None, str | None]] = []
    key = hmac_key(SECRET, kid="new")

    class Rotating:
        def get(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
            return None

        async def fetch(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
            asked.append((kid, issuer))
            return key if kid == "new" else None

    check = JWTVerifier(Rotating(), issuer=ISSUER, audience=AUDIENCE, clock=clock())
    assert (await check.averify(hs256(kid="new")))["sub"] == "user-1"
    with pytest.raises(AuthenticationFailed):
        await check.averify(hs256(kid="gone"))
    assert asked == [("new", ISSUER), ("gone", ISSUER)]
    refused(check, hs256(kid="new", extra=1))  # verify never does I/O


def test_claims_are_read_only() -> None:
    verified = verifier().verify(hs256())
    with pytest.raises(TypeError):
        verified["sub"] = "root"  # type: ignore[index]


def test_a_verified_token_is_cached_until_its_exp() -> None:
    manual = ManualClock()
    keys = StaticKeys(hmac_key(SECRET))
    check = JWTVerifier(keys, issuer=ISSUER, audience=AUDIENCE, clock=manual, leeway=30)
    token = hs256(claims(exp=NOW + 100))
    first = check.verify(token)
    keys._keys.clear()  # the key is gone: only the cache can answer
    keys._sole = None
    assert check.verify(token) is first
    assert check.cache is not None
    assert len(check.cache) == 1
    manual.advance(100)  # exp reached: the entry is gone, the full check runs (and fails)
    refused(check, token)


def test_the_cache_honours_max_age_and_can_be_cleared() -> None:
    manual = ManualClock()
    check = verifier(clock=manual, cache_max_age=10)
    token = hs256()
    first = check.verify(token)
    assert check.verify(token) is first
    manual.advance(10)
    second = check.verify(token)
    assert second is not first
    assert check.cache is not None
    check.cache.clear()
    assert check.verify(token) is not second


def test_failures_are_not_cached() -> None:
    check = verifier()
    token = hs256(claims(aud="other"))
    refused(check, token)
    refused(check, token)
    assert check.cache is not None
    assert len(check.cache) == 0
    assert verifier(cache_size=0).cache is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"leeway": -1},
        {"leeway": 3601},
        {"leeway": "30"},
        {"max_token_bytes": 10},
        {"max_token_bytes": 2**30},
        {"max_token_bytes": 8192.0},
        {"typ": ""},
        {"issuer": ""},
        {"issuer": []},
        {"audience": [1]},
        {"algorithms": ["none"]},
        {"algorithms": ["HS256", "ES256K"]},
        {"algorithms": []},
        {"required_claims": [""]},
        {"cache_size": -1},
        {"cache_max_age": 0},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        verifier(**kwargs)
    with pytest.raises(ConfigurationError, match="KeySource"):
        JWTVerifier({"k": SECRET})  # type: ignore[arg-type]


async def test_averify_answers_a_repeat_token_from_the_cache() -> None:
    check = verifier()
    first = await check.averify(hs256())
    assert await check.averify(hs256()) is first
    assert check.verify(hs256()) is first


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ["a", "b", "c"]])
async def test_a_token_that_is_no_str_is_malformed(token: Any) -> None:
    refused(verifier(), token, "invalid_token")
    with pytest.raises(AuthenticationFailed):
        await verifier().averify(token)


def test_a_single_required_claim_may_be_a_str() -> None:
    check = verifier(required_claims="jti")
    refused(check, hs256())
    assert check.verify(hs256(claims(jti="j1", exp=None)))


def test_the_key_issuer_binding_holds_whatever_the_source_returns() -> None:
    key = hmac_key(SECRET, issuer="https://other.example")
    check = JWTVerifier(Fixed(key), audience=AUDIENCE, clock=clock())
    assert check.verify(hs256(claims(iss="https://other.example")))
    refused(check, hs256())
    refused(check, hs256(claims(iss=None)))
