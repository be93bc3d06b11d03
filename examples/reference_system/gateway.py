"""The reference system's gateway layers: JWT authentication and the RBAC route rules.

Tokens are the demo's own (see `demo_keys`): RS256 with the demo key, issuer
``sysdesign-kit-demo``, audience ``reference-system``. A verified token becomes the
`Principal` the rate limiter tiers by (its ``tier`` claim) and the rules below check:

==================================  =================================================
route                               needs
==================================  =================================================
``GET /api/v1/products/{id}``       scope ``read`` when a token is given; anonymous
                                    reads are allowed (at the anonymous tier)
``DELETE /api/v1/products/{id}``    role ``admin``
``POST /api/v1/orders``             scope ``write``
``GET /api/v1/orders/{id}``         scope ``read``
``GET /api/v1/users/{id}``          scope ``read``
==================================  =================================================

Other routes keep their own checks. The demo's ``X-API-Key`` keys keep working beside
tokens: the JWT layer reads only ``Authorization``, and leaves the principal an API key
set alone when there is no token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.middleware import Middleware

from reference_system.demo_keys import ALGORITHM, AUDIENCE, ISSUER, DemoKeys
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.events import Listener
from sysdesign_kit.gateway.deferred import DeferredAuthentication
from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
from sysdesign_kit.gateway.rbac import AuthorizationMiddleware
from sysdesign_kit.gateway.rbac_policy import Rule
from sysdesign_kit.gateway.static_keys import StaticKeys, verification_key
from sysdesign_kit.gateway.validation import Schema, ValidationMiddleware

__all__ = ["MAX_BODY_BYTES", "RULES", "authentication", "authorization", "validation"]

_PRODUCT = "/api/v1/products/{product_id}"

#: The demo's route rules (see the module doc).
RULES = (
    Rule(f"GET {_PRODUCT}", scopes="read", anonymous=True),
    Rule(f"DELETE {_PRODUCT}", roles="admin"),
    Rule("POST /api/v1/orders", scopes="write"),
    Rule("GET /api/v1/orders/{order_id}", scopes="read"),
    Rule("GET /api/v1/users/{user_id}", scopes="read"),
)


def authentication(
    keys: DemoKeys,
    *,
    clock: Clock = SYSTEM_CLOCK,
    listeners: Iterable[Listener] = (),
    refused_anyway: Callable[[MutableMapping[str, Any]], Awaitable[bool]] | None = None,
) -> Middleware:
    """JWT bearer authentication trusting ``keys``' public key (RS256 only), whose refusals
    are answered below the rate limiter (see `sysdesign_kit.gateway.deferred`; place
    `AnswerDeferred` there).

    Args:
        keys: the demo's signing key; only its public half is used here.
        clock: judges ``exp`` and ``iat`` (the scripted demo's simulated clock, on which
            it mints its tokens).
        listeners: receive `AuthSucceeded` and `AuthFailed`.
        refused_anyway: the rate limits' per-IP check (`TieredLimits.over_ip_limit`): a
            client past its per-IP limit gets its 429 without a signature check.
    """
    trusted = verification_key(keys.public_key, kid=keys.kid, algorithms=[ALGORITHM])
    verifier = JWTVerifier(StaticKeys(trusted), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    return Middleware(
        DeferredAuthentication,
        bearer=JWTAuthenticator(verifier),
        listeners=list(listeners),
        refused_anyway=refused_anyway,
    )


def authorization(*, listeners: Iterable[Listener] = ()) -> Middleware:
    """RBAC over `RULES`; routes without a rule are left to the app.

    Args:
        listeners: receive an `AccessDenied` per refusal.
    """
    return Middleware(AuthorizationMiddleware, rules=RULES, listeners=list(listeners))


#: The largest JSON body the services read (an order of 20 lines is well under 2 KiB).
MAX_BODY_BYTES = 16 * 1024


def validation(schemas: Iterable[Schema]) -> Middleware:
    """The services' body schemas, checked after authorization (so a caller who may not
    place an order learns that, not what a valid order looks like)."""
    return Middleware(ValidationMiddleware, schemas=list(schemas), max_body_bytes=MAX_BODY_BYTES)
