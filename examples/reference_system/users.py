"""The user service: ``GET /api/v1/users/{id}``, a caller's profile as the gateway sees it.

``GET /api/v1/users/me`` (or the caller's own subject as the id) answers with the principal
the gateway authenticated: subject, tier, roles, scopes, how it was authenticated, and how
many orders it has placed. Another user's profile needs the ``admin`` role (403 otherwise)
and is found among the users the system knows: the demo's API-key holders and whoever has
placed an order (404 for anyone else). RBAC wants scope ``read`` for all of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.orders import OrderService
from reference_system.problems import problem
from sysdesign_kit.principal import Principal, get_principal

__all__ = ["UserService"]

_SHOWN = 40  # characters of an unknown id repeated in the answer


class UserService:
    """The user route.

    Args:
        keys: the API keys' principals (the users known from the start).
        orders: the order service (for the order counts and the customers it has seen).
    """

    def __init__(self, keys: Mapping[str, Principal], *, orders: OrderService) -> None:
        self.known = {principal.subject: principal for principal in keys.values()}
        self.orders = orders
        self.routes = [Route("/api/v1/users/{user_id}", self.get_user, methods=["GET"])]

    def profile(self, principal: Principal) -> dict[str, object]:
        """A user's profile, from its principal."""
        return {
            "id": principal.subject,
            "tier": principal.tier,
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
            "auth": principal.method,
            "orders": self.orders.placed[principal.subject],
        }

    async def get_user(self, request: Request) -> Response:
        """The caller's own profile (``me``), or another user's for the ``admin`` role."""
        principal = get_principal(request.scope)
        if principal is None:
            return problem(401, "reading a profile needs a token with the read scope")
        wanted: str = request.path_params["user_id"]
        if wanted in ("me", principal.subject):
            return JSONResponse(self.profile(principal))
        if "admin" not in principal.roles:
            return problem(403, "only the admin role reads other users' profiles")
        other = self.orders.customers.get(wanted) or self.known.get(wanted)
        if other is None:
            return problem(404, f"no user {wanted[:_SHOWN]!r}")
        return JSONResponse(self.profile(other))
