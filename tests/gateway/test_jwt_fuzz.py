"""Hypothesis: whatever the token, the verifier answers claims or AuthenticationFailed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sysdesign_kit.errors import AuthenticationFailed
from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key

from .jwt_support import AUDIENCE, ISSUER, NOW, SECRET, b64, claims, clock, craft, hs256

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERIFIER = JWTVerifier(
    StaticKeys(hmac_key(SECRET, kid="k1"), hmac_key(SECRET[::-1], kid="k2")),
    issuer=ISSUER,
    audience=AUDIENCE,
    clock=clock(),
    cache_size=0,
)
AUTHENTICATOR = JWTAuthenticator(VERIFIER, tenant_claim="tenant", cache_size=0)

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
CLAIM_VALUES = st.one_of(
    JSON,
    st.sampled_from([ISSUER, AUDIENCE, NOW, NOW + 100, NOW - 100, "read write", ["admin"]]),
)
HEADER_VALUES = st.one_of(
    JSON,
    st.sampled_from(["HS256", "RS256", "none", "k1", "k2", "../k1", "at+jwt", ["b64"]]),
)
HEADER_NAMES = st.sampled_from(["alg", "kid", "typ", "crit", "jku", "jwk", "x5c", "b64", "cty"])
CLAIM_NAMES = st.sampled_from(
    ["sub", "iss", "aud", "exp", "nbf", "iat", "scope", "scp", "roles", "tier", "tenant"]
)


def outcome(token: Any) -> Mapping[str, Any] | None:
    """The claims, or None when refused; anything else escapes and fails the test."""
    try:
        return VERIFIER.verify(token)
    except AuthenticationFailed as exc:
        error = exc.error
    assert error in ("invalid_request", "invalid_token")
    return None


@FUZZ
@given(st.text(max_size=300))
def test_any_text(token: str) -> None:
    assert outcome(token) is None


@FUZZ
@given(st.lists(st.text(alphabet=B64URL + "=+/.", max_size=120), min_size=1, max_size=5))
def test_any_base64ish_segments(segments: list[str]) -> None:
    assert outcome(".".join(segments)) is None


@FUZZ
@given(JSON, JSON, st.binary(max_size=80))
def test_any_json_in_the_segments(header: Any, payload: Any, signature: bytes) -> None:
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    assert outcome(f"{token}.{b64(signature)}") is None


@FUZZ
@given(st.data())
def test_any_mutation_of_a_valid_token(data: st.DataObject) -> None:
    token = hs256(kid="k1")
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.text(max_size=3))
    mutated = token[:position] + replacement + token[position + 1 :]
    result = outcome(mutated)
    # A change can only pass where it did not change the signed bytes or the signature.
    assert result is None or mutated == token


@FUZZ
@given(
    st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
    st.dictionaries(CLAIM_NAMES, CLAIM_VALUES, max_size=8),
)
def test_any_signed_header_and_claims(header: dict[str, Any], fuzzed: dict[str, Any]) -> None:
    """Properly signed, so every header and claim check is reached."""
    payload = {**claims(), **fuzzed}
    token = craft(header, payload)
    result = outcome(token)
    if result is not None:
        assert header.get("alg") == "HS256"
        assert header.get("kid") in (None, "k1")
        assert result == payload
    if result is None:
        return
    try:
        subject = AUTHENTICATOR.principal(result).subject
    except AuthenticationFailed as exc:
        subject = exc.error
    assert subject in (payload["sub"], "invalid_token")


@FUZZ
@given(st.text(max_size=200))
async def test_averify_and_authenticate_agree(token: str) -> None:
    for call in (VERIFIER.averify, AUTHENTICATOR.authenticate):
        try:
            await call(token)
        except AuthenticationFailed:
            pass
        else:  # pragma: no cover - random text is never a signed token
            raise AssertionError(token)
