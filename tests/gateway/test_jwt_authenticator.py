"""JWTAuthenticator: verified claims become the Principal the rest of the stack sees."""

from __future__ import annotations

from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.gateway.authenticator import Authenticator
from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
from sysdesign_kit.gateway.static_keys import StaticKeys
from sysdesign_kit.principal import Principal

from .jwt_support import AUDIENCE, ISSUER, NOW, SECRET, claims, hs256


def authenticator(
    manual: ManualClock | None = None, verifier_cache: int = 4096, **kwargs: Any
) -> JWTAuthenticator:
    verifier = JWTVerifier(
        StaticKeys.from_secret(SECRET),
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=manual or ManualClock(),
        cache_size=verifier_cache,
    )
    return JWTAuthenticator(verifier, **kwargs)


async def test_claims_map_to_the_principal() -> None:
    auth = authenticator()
    assert isinstance(auth, Authenticator)
    principal = await auth.authenticate(hs256())
    assert principal == Principal(
        "user-1",
        tier="premium",
        scopes=frozenset({"read", "write"}),
        roles=frozenset({"admin"}),
        method="jwt",
    )
    assert principal.claims["iss"] == ISSUER
    assert auth.method == "jwt"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tier": None}, {"tier": "free"}),
        ({"roles": "admin ops", "scope": None}, {"roles": {"admin", "ops"}, "scopes": set()}),
        ({"roles": None}, {"roles": set()}),
        ({"scope": None, "scp": ["read", "admin"]}, {"scopes": {"read", "admin"}}),
        ({"scope": "  read   write "}, {"scopes": {"read", "write"}}),
        ({"scope": "read", "scp": ["admin"]}, {"scopes": {"read"}}),  # scope first
    ],
)
async def test_optional_claims(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    principal = await authenticator().authenticate(hs256(claims(**overrides)))
    for name, value in expected.items():
        assert getattr(principal, name) == value


async def test_claim_names_are_configurable() -> None:
    auth = authenticator(
        subject_claim="client_id",
        tier_claim="plan",
        default_tier="anonymous",
        roles_claim="groups",
        scope_claims="permissions",
        tenant_claim="tid",
    )
    token = hs256(
        claims(client_id="svc", plan="premium", groups=["g"], permissions=["p"], tid="t1")
    )
    principal = await auth.authenticate(token)
    assert (principal.subject, principal.tier, principal.tenant) == ("svc", "premium", "t1")
    assert (principal.roles, principal.scopes) == (frozenset({"g"}), frozenset({"p"}))
    assert (await auth.authenticate(hs256(claims(client_id="svc")))).tier == "anonymous"
    assert (await auth.authenticate(hs256(claims(client_id="svc")))).tenant is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": None},
        {"sub": ""},
        {"tier": 3},
        {"tier": ""},
        {"roles": {"admin": True}},
        {"roles": ["admin", 1]},
        {"scope": 7},
        {"scope": None, "scp": [None]},
        {"tenant": ["a"]},
    ],
)
async def test_mistyped_claims_are_refused(overrides: dict[str, Any]) -> None:
    auth = authenticator(tenant_claim="tenant")
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(hs256(claims(**overrides)))
    assert caught.value.error == "invalid_token"
    assert caught.value.status == 401


async def test_verification_failures_pass_through() -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        await authenticator().authenticate("not-a-token")
    assert (caught.value.error, caught.value.status) == ("invalid_token", 401)


async def test_a_repeat_token_reuses_its_principal_until_exp() -> None:
    manual = ManualClock()
    auth = authenticator(manual)
    token = hs256(claims(exp=NOW + 50))
    first = await auth.authenticate(token)
    assert await auth.authenticate(token) is first
    assert auth.cache is not None
    assert len(auth.cache) == 1
    auth.clear_cache()
    second = await auth.authenticate(token)
    assert second is not first
    manual.advance(50)  # exp: no longer cached; verified again (within the 30 s leeway)
    assert await auth.authenticate(token) is not second
    manual.advance(30)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(token)


async def test_without_a_cache_each_call_verifies() -> None:
    auth = authenticator(verifier_cache=0, cache_size=0)
    token = hs256()
    assert auth.cache is None
    assert await auth.authenticate(token) is not await auth.authenticate(token)
    auth.clear_cache()  # nothing to clear


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject_claim": ""},
        {"tier_claim": 1},
        {"default_tier": ""},
        {"scope_claims": ["scope", ""]},
        {"tenant_claim": ""},
        {"cache_size": -1},
        {"cache_max_age": -1},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        authenticator(**kwargs)
    with pytest.raises(ConfigurationError, match="JWTVerifier"):
        JWTAuthenticator(object())  # type: ignore[arg-type]
