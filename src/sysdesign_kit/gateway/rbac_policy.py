"""The authorization policy, pure: route rules, the role -> permission mapping, and the
refusal each check ends in. `AuthorizationMiddleware <sysdesign_kit.gateway.rbac>` applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError, Forbidden
from sysdesign_kit.events import AccessDenied
from sysdesign_kit.gateway._route_table import RouteTable, parse_route_key
from sysdesign_kit.gateway.challenge import bearer_challenge
from sysdesign_kit.principal import Principal

__all__ = [
    "AccessDenied",
    "AccessPolicy",
    "Denial",
    "Reason",
    "Rule",
    "challenge",
    "denial_of",
    "error_of",
    "names",
]

Reason = Literal[
    "unauthenticated",
    "insufficient_scope",
    "missing_role",
    "missing_permission",
    "unmatched",
    "bad_path",
]


def names(value: str | Iterable[str], what: str) -> frozenset[str]:
    """``value`` (a space-separated string or names) as a set of names."""
    items = value.split() if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item or item != item.strip() or " " in item:
            raise ConfigurationError(f"{what} {item!r} must be a non-empty name without spaces")
    return frozenset(items)


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """What a route requires.

    Args:
        route: ``"METHOD /path/{template}"`` (methods joined by ``,``; ``*`` or no method:
            any); unused by `requires` and `require`.
        scopes: scopes the principal must all hold (a string is split on spaces).
        roles: roles of which the principal must hold at least one.
        permissions: permissions the principal's roles must all grant (see `AccessPolicy`).
        anonymous: let requests without a principal through.

    Raises:
        ConfigurationError: a route or name that does not parse.
    """

    route: str = "*"
    scopes: frozenset[str] = field(default=frozenset())
    roles: frozenset[str] = field(default=frozenset())
    permissions: frozenset[str] = field(default=frozenset())
    anonymous: bool = False

    def __init__(
        self,
        route: str = "*",
        *,
        scopes: str | Iterable[str] = (),
        roles: str | Iterable[str] = (),
        permissions: str | Iterable[str] = (),
        anonymous: bool = False,
    ) -> None:
        if route != "*":
            methods, path = parse_route_key(route)
            RouteTable([(methods, path, True)])  # a template that does not compile fails here
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "scopes", names(scopes, "scope"))
        object.__setattr__(self, "roles", names(roles, "role"))
        object.__setattr__(self, "permissions", names(permissions, "permission"))
        object.__setattr__(self, "anonymous", bool(anonymous))


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused: the status, a short reason code, a safe detail, and the
    scopes required when the reason is ``insufficient_scope``."""

    status: int
    reason: Reason
    detail: str
    scope: str = ""


class AccessPolicy:
    """Rules and the role -> permission mapping, evaluated without I/O.

    Args:
        rules: the route rules; for one method and path a template without parameters
            wins, then the first declared.
        role_permissions: the permissions each role grants, e.g.
            ``{"admin": {"products:delete", "orders:read"}}``.
        deny_unmatched: refuse requests no rule matches (deny by default).
        unmatched_status: 403 (default) or 404 for those.

    Raises:
        ConfigurationError: a rule's route or a name that does not parse, or an
            ``unmatched_status`` other than 403 and 404.
    """

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        role_permissions: Mapping[str, str | Iterable[str]] | None = None,
        deny_unmatched: bool = False,
        unmatched_status: int = 403,
    ) -> None:
        if unmatched_status not in (403, 404):
            raise ConfigurationError(f"unmatched_status must be 403 or 404, not {unmatched_status}")
        self.rules: tuple[Rule, ...] = tuple(rules)
        entries: list[tuple[str, str, tuple[Rule, ...]]] = []
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise ConfigurationError(f"rules must be Rule instances, not {rule!r}")
            if rule.route == "*":
                raise ConfigurationError("a table rule needs a route ('GET /path')")
            methods, path = parse_route_key(rule.route)
            entries.append((methods, path, (rule,)))
        self._table: RouteTable[tuple[Rule, ...]] = RouteTable(entries)
        self.role_permissions: dict[str, frozenset[str]] = {
            role: names(granted, "permission") for role, granted in (role_permissions or {}).items()
        }
        self.deny_unmatched = deny_unmatched
        self.unmatched_status = unmatched_status

    def with_rules_first(self, rules: Iterable[Rule]) -> AccessPolicy:
        """A copy with ``rules`` ahead of this policy's own."""
        return AccessPolicy(
            [*rules, *self.rules],
            role_permissions=self.role_permissions,
            deny_unmatched=self.deny_unmatched,
            unmatched_status=self.unmatched_status,
        )

    @property
    def active(self) -> bool:
        """Whether any request can be refused by the table."""
        return self.deny_unmatched or len(self._table) > 0

    def rules_for(self, method: str, path: str) -> tuple[Rule, ...] | None:
        """The rules for ``method`` on ``path`` (already normalised), or None."""
        return self._table.match(method, path)

    def permissions_of(self, principal: Principal) -> frozenset[str]:
        """Every permission ``principal``'s roles grant."""
        mapping = self.role_permissions
        granted: frozenset[str] = frozenset()
        for role in principal.roles:
            extra = mapping.get(role)
            if extra:
                granted |= extra
        return granted

    def check(self, principal: Principal | None, rule: Rule) -> Denial | None:
        """Why ``principal`` may not pass ``rule``, or None if it may."""
        if principal is None:
            if rule.anonymous:
                return None
            return Denial(401, "unauthenticated", "authentication is required")
        if rule.scopes and not rule.scopes <= principal.scopes:
            needed = " ".join(sorted(rule.scopes))
            return Denial(403, "insufficient_scope", f"requires scope {needed!r}", needed)
        if rule.roles and rule.roles.isdisjoint(principal.roles):
            return Denial(403, "missing_role", "a required role is missing")
        if rule.permissions and not rule.permissions <= self.permissions_of(principal):
            return Denial(403, "missing_permission", "a required permission is missing")
        return None


def denial_of(exc: Forbidden | AuthenticationFailed) -> Denial:
    """The refusal an exception raised by an endpoint stands for."""
    if isinstance(exc, AuthenticationFailed):
        return Denial(exc.status, "unauthenticated", exc.description)
    if exc.scope:
        return Denial(403, "insufficient_scope", f"requires scope {exc.scope!r}", exc.scope)
    return Denial(403, "missing_role", "a required role or permission is missing")


def error_of(denial: Denial) -> Forbidden | AuthenticationFailed:
    """The exception an endpoint raises for ``denial``."""
    if denial.status == 401:
        return AuthenticationFailed(denial.detail, error="")
    return Forbidden(denial.detail, scope=denial.scope)


def challenge(denial: Denial, realm: str, error: str = "") -> bytes | None:
    """The ``WWW-Authenticate`` value for ``denial``, if it has one."""
    if denial.reason == "unauthenticated":
        return bearer_challenge(realm=realm or None, error=error, description=denial.detail)
    if denial.reason == "insufficient_scope":
        return bearer_challenge(realm=realm or None, error="insufficient_scope", scope=denial.scope)
    return None
