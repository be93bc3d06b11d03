"""Our gateway pieces as the benchmark uses them, or None where they are not built yet.

The gateway lands piece by piece (JWT verifier, authentication middleware, RBAC). Each
function here returns None until the modules it needs exist; the benchmark then prints the
cases and targets that need them as NOT MEASURED instead of failing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

from starlette.middleware import Middleware

from benchmarks._gateway_jwt import AUDIENCE, ISSUER, SigningKey, make_key

__all__ = ["NOT_BUILT", "Verify", "chain_key", "chain_middleware", "gateway_wrap", "verifier"]

#: What the benchmark prints for a case whose pieces are not in the tree yet.
NOT_BUILT = "not built yet"

#: ``await verify(token)`` -> the verified claims.
Verify = Callable[[str], Awaitable[Any]]


def _jwt_verifier(key: SigningKey, *, cache_size: int) -> Any:
    """Our `JWTVerifier` trusting ``key`` (issuer and audience checked), or None."""
    try:
        from sysdesign_kit.gateway.jwt import JWTVerifier
        from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key, verification_key
    except ImportError:
        return None
    if key.alg == "HS256":
        trusted = hmac_key(key.public, kid=key.kid)
    else:
        trusted = verification_key(key.public, kid=key.kid, algorithms=[key.alg])
    return JWTVerifier(StaticKeys(trusted), issuer=ISSUER, audience=AUDIENCE, cache_size=cache_size)


def verifier(key: SigningKey, *, cache: bool) -> Verify | None:
    """Our JWT verification (``averify``, what authentication awaits) of tokens signed with
    ``key``, with or without the verified-token cache; None until it is built."""
    built = _jwt_verifier(key, cache_size=4096 if cache else 0)
    return None if built is None else built.averify


@cache
def chain_key() -> SigningKey:
    """The RS256 key the chain's verifier trusts (its tokens are minted with it)."""
    return make_key("RS256")


def chain_middleware() -> list[Middleware] | None:
    """The gateway's layers of the full chain, outermost first (JWT authentication with
    its token cache, then RBAC over the route's rule); None until they are built."""
    try:
        from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
        from sysdesign_kit.gateway.jwt import JWTAuthenticator
        from sysdesign_kit.gateway.rbac import AuthorizationMiddleware
        from sysdesign_kit.gateway.rbac_policy import Rule
    except ImportError:
        return None
    return [
        Middleware(AuthenticationMiddleware, bearer=_authenticator(JWTAuthenticator)),
        Middleware(AuthorizationMiddleware, rules=_rules(Rule), deny_unmatched=True),
    ]


def _authenticator(cls: Any) -> Any:
    return cls(_jwt_verifier(chain_key(), cache_size=4096))


def _rules(rule: Any) -> list[Any]:
    return [
        rule("GET /api/v1/products/{id}", scopes="read", anonymous=True),
        rule("DELETE /api/v1/products/{id}", roles="admin"),
    ]


def gateway_wrap(observability: Mapping[str, Any], limits: Any) -> Callable[[Any], Any] | None:
    """``Gateway(...).wrap``: the same chain as `chain_middleware` with the observability
    layer and ``limits``, put around an app the way the docs show; None until built."""
    try:
        from sysdesign_kit.gateway.jwt import JWTAuthenticator
        from sysdesign_kit.gateway.rbac_policy import Rule
        from sysdesign_kit.gateway.stack import Gateway
    except ImportError:
        return None
    gateway = Gateway(
        observability=observability,
        authentication={"bearer": _authenticator(JWTAuthenticator)},
        rate_limit={"limits": limits},
        authorization={"rules": _rules(Rule), "deny_unmatched": True},
    )
    return gateway.wrap
