"""The seed's API gateway as pure-ASGI layers, each usable alone, stacked by `Gateway`.

Outermost first (see `stack`)::

    correlation id (or observability) -> authentication -> rate limit -> authorization
      -> body limit -> versioning -> validation -> principal headers -> service router

- authentication: `AuthenticationMiddleware` with a bearer `Authenticator` (`JWTAuthenticator`
  over a `JWTVerifier` whose keys come from `StaticKeys` or `JWKSKeys`, or
  `IntrospectionAuthenticator` for opaque tokens) and/or `ApiKeyAuthenticator`; the
  resulting `Principal` is what the rate limiter's tiers, RBAC and the app read;
- authorization: `AuthorizationMiddleware` with `Rule` tables, `requires`/`require`;
- request shaping: `BodyLimitMiddleware`, `VersionMiddleware`, `ValidationMiddleware`,
  `PrincipalHeadersMiddleware`, `CorrelationIdMiddleware`;
- routing: `ServiceRouter` over one `ReverseProxy` per service.

Names are imported on first use: ``import sysdesign_kit.gateway`` needs none of pyjwt,
cryptography or httpx until a layer that uses them is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sysdesign_kit.gateway.api_keys import (
        ApiKeyAuthenticator,
        ApiKeyRecord,
        hash_api_key,
        load_api_keys,
        load_api_keys_env,
        load_api_keys_file,
        mint_api_key,
    )
    from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
    from sysdesign_kit.gateway.authenticator import Authenticator
    from sysdesign_kit.gateway.body_limit import BodyLimitMiddleware
    from sysdesign_kit.gateway.challenge import bearer_challenge
    from sysdesign_kit.gateway.correlation import CorrelationIdMiddleware
    from sysdesign_kit.gateway.deferred import AnswerDeferred, DeferredAuthentication
    from sysdesign_kit.gateway.headers import PrincipalHeadersMiddleware
    from sysdesign_kit.gateway.introspection import IntrospectionAuthenticator
    from sysdesign_kit.gateway.jwk import InvalidJWKS, parse_jwks
    from sysdesign_kit.gateway.jwks import JWKSKeys, JWKSStatus
    from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
    from sysdesign_kit.gateway.keys import KeySource, VerificationKey
    from sysdesign_kit.gateway.proxy import ReverseProxy, RoundRobin, Upstream, UpstreamPicker
    from sysdesign_kit.gateway.rbac import (
        AccessPolicy,
        AuthorizationMiddleware,
        Rule,
        authorization_error_handler,
        require,
        requires,
        rules_from_routes,
    )
    from sysdesign_kit.gateway.routing import (
        SEED_ROUTES,
        ServiceRoute,
        ServiceRouter,
        ServiceRoutes,
    )
    from sysdesign_kit.gateway.stack import Gateway
    from sysdesign_kit.gateway.static_keys import (
        StaticKeys,
        hmac_key,
        pem_file_key,
        pem_key,
        verification_key,
    )
    from sysdesign_kit.gateway.token_cache import TokenCache
    from sysdesign_kit.gateway.validation import (
        Schema,
        ValidationMiddleware,
        validated_body,
        validated_query,
    )
    from sysdesign_kit.gateway.versioning import Deprecation, VersionMiddleware, api_version

__all__ = [
    "SEED_ROUTES",
    "AccessPolicy",
    "AnswerDeferred",
    "ApiKeyAuthenticator",
    "ApiKeyRecord",
    "AuthenticationMiddleware",
    "Authenticator",
    "AuthorizationMiddleware",
    "BodyLimitMiddleware",
    "CorrelationIdMiddleware",
    "DeferredAuthentication",
    "Deprecation",
    "Gateway",
    "IntrospectionAuthenticator",
    "InvalidJWKS",
    "JWKSKeys",
    "JWKSStatus",
    "JWTAuthenticator",
    "JWTVerifier",
    "KeySource",
    "PrincipalHeadersMiddleware",
    "ReverseProxy",
    "RoundRobin",
    "Rule",
    "Schema",
    "ServiceRoute",
    "ServiceRouter",
    "ServiceRoutes",
    "StaticKeys",
    "TokenCache",
    "Upstream",
    "UpstreamPicker",
    "ValidationMiddleware",
    "VerificationKey",
    "VersionMiddleware",
    "api_version",
    "authorization_error_handler",
    "bearer_challenge",
    "hash_api_key",
    "hmac_key",
    "load_api_keys",
    "load_api_keys_env",
    "load_api_keys_file",
    "mint_api_key",
    "parse_jwks",
    "pem_file_key",
    "pem_key",
    "require",
    "requires",
    "rules_from_routes",
    "validated_body",
    "validated_query",
    "verification_key",
]

#: Where each public name lives.
_HOME = {
    "AuthenticationMiddleware": "authentication",
    "Authenticator": "authenticator",
    "KeySource": "keys",
    "VerificationKey": "keys",
    "JWTAuthenticator": "jwt",
    "JWTVerifier": "jwt",
    "StaticKeys": "static_keys",
    "hmac_key": "static_keys",
    "pem_file_key": "static_keys",
    "pem_key": "static_keys",
    "verification_key": "static_keys",
    "TokenCache": "token_cache",
    "JWKSKeys": "jwks",
    "JWKSStatus": "jwks",
    "InvalidJWKS": "jwk",
    "parse_jwks": "jwk",
    "ApiKeyAuthenticator": "api_keys",
    "ApiKeyRecord": "api_keys",
    "hash_api_key": "api_keys",
    "load_api_keys": "api_keys",
    "load_api_keys_env": "api_keys",
    "load_api_keys_file": "api_keys",
    "mint_api_key": "api_keys",
    "IntrospectionAuthenticator": "introspection",
    "bearer_challenge": "challenge",
    "AccessPolicy": "rbac",
    "AuthorizationMiddleware": "rbac",
    "Rule": "rbac",
    "authorization_error_handler": "rbac",
    "require": "rbac",
    "requires": "rbac",
    "rules_from_routes": "rbac",
    "Schema": "validation",
    "ValidationMiddleware": "validation",
    "validated_body": "validation",
    "validated_query": "validation",
    "BodyLimitMiddleware": "body_limit",
    "Deprecation": "versioning",
    "VersionMiddleware": "versioning",
    "api_version": "versioning",
    "PrincipalHeadersMiddleware": "headers",
    "CorrelationIdMiddleware": "correlation",
    "AnswerDeferred": "deferred",
    "DeferredAuthentication": "deferred",
    "ReverseProxy": "proxy",
    "RoundRobin": "proxy",
    "Upstream": "proxy",
    "UpstreamPicker": "proxy",
    "SEED_ROUTES": "routing",
    "ServiceRoute": "routing",
    "ServiceRouter": "routing",
    "ServiceRoutes": "routing",
    "Gateway": "stack",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sysdesign_kit.gateway.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
