"""Authorization: route rules as data, roles mapped to permissions, scopes checked per RFC 6750.

`AuthorizationMiddleware` sits below authentication: it reads the `Principal` the
authentication layer left in the scope, finds the `Rule` for the request's method and path
(templates compiled once; one dict lookup or one regex match per request) and answers:

======================================  ==========================================================
the request                             the answer
======================================  ==========================================================
no rule matches, ``deny_unmatched``     403 problem (``unmatched_status=404`` to hide the route)
no rule matches, default                passes (authorization not configured for it)
a rule matches, no principal            401, ``WWW-Authenticate: Bearer`` (unless ``anonymous``)
a required scope is missing             403, ``WWW-Authenticate: Bearer error="insufficient_scope",
                                        scope="..."`` (RFC 6750 section 3.1)
none of the rule's roles held           403 problem
a permission no held role grants        403 problem
a ``.`` or ``..`` path segment          400 problem (no client sends one; it only serves to make
                                        two layers disagree about the route)
======================================  ==========================================================

Unmatched routes answer 403 rather than 404 by default: the layer knows the route is not
granted, not that it does not exist (the app may serve it), and a 404 from authorization
would hide a missing rule from the developer who forgot it. Choose 404 to hide which routes
exist; either way every unmatched path gets the same answer.

A rule requires all of its ``scopes``, any one of its ``roles`` and all of its
``permissions``; a rule with none of them requires a principal only, and ``anonymous=True``
lets callers without one through (callers with one are still checked).

Per-route requirements can also live next to the endpoint: the `requires` decorator and the
FastAPI dependency `require`. Both check when the endpoint runs (raising `Forbidden`, which
the middleware answers) and, given ``routes=app``, the middleware finds them at startup and
applies them before the app is called, ahead of the table's rules for the same route.

With ``dry_run=True`` nothing is refused: each request that would have been is logged at
WARNING on ``sysdesign_kit.gateway.rbac`` and published as an `AccessDenied` event.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError, Forbidden
from sysdesign_kit.events import Listener, Publisher
from sysdesign_kit.gateway._respond import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    problem_body,
    send_problem,
)
from sysdesign_kit.gateway._route_table import normalize_path
from sysdesign_kit.gateway.rbac_policy import (
    AccessDenied,
    AccessPolicy,
    Denial,
    Rule,
    challenge,
    denial_of,
    error_of,
)
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal

__all__ = [
    "AccessDenied",
    "AccessPolicy",
    "AuthorizationMiddleware",
    "Rule",
    "authorization_error_handler",
    "require",
    "requires",
    "rules_from_routes",
]

_log = logging.getLogger("sysdesign_kit.gateway.rbac")
F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__sysdesign_rules__"


class _Context:
    """What `requires` and `require` find while the middleware serves a request."""

    __slots__ = ("middleware", "principal")

    def __init__(self, middleware: AuthorizationMiddleware, principal: Principal | None) -> None:
        self.middleware = middleware
        self.principal = principal

    def enforce(self, rules: Sequence[Rule], method: str) -> None:
        middleware = self.middleware
        for rule in rules:
            denial = middleware.policy.check(self.principal, rule)
            if denial is not None:
                middleware._report(denial, method, rule.route, self.principal)
                if not middleware.dry_run:
                    raise error_of(denial)
                return


_current: ContextVar[_Context | None] = ContextVar("sysdesign_kit.gateway.rbac", default=None)
# Set once any `requires` or `require` exists: from then on the middleware (by default)
# provides the context they check in.
_in_use = False


class AuthorizationMiddleware:
    """Role- and scope-based authorization for every HTTP request (and websocket handshake).

    Args:
        app: the ASGI app to protect.
        rules: the route rules (see `Rule`), or a ready `AccessPolicy`.
        role_permissions: permissions per role, when ``rules`` is not an `AccessPolicy`.
        deny_unmatched: refuse requests no rule matches (deny by default).
        unmatched_status: 403 (default) or 404 for those.
        routes: the app (or its routes): endpoints marked with `requires` and routes
            depending on `require` are found once and their rules applied here first.
        dry_run: refuse nothing; log and publish what would have been refused.
        endpoint_checks: make `requires` and `require` work below this layer and answer
            the `Forbidden` / `AuthenticationFailed` raised by endpoints before they
            respond (a context variable and a wrapped ``send``: about 0.5 us a request).
            None (the default): on once the process has created any `requires` or
            `require`; False: only the rule table applies.
        realm: the ``realm`` of ``WWW-Authenticate`` challenges (none by default).
        listeners: receive an `AccessDenied` per refusal (and per would-be refusal).
        name: the ``component`` of the published events.

    Raises:
        ConfigurationError: a rule that does not parse, or an unmatched_status other than
            403 and 404.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: AccessPolicy | Iterable[Rule] = (),
        role_permissions: Mapping[str, str | Iterable[str]] | None = None,
        deny_unmatched: bool = False,
        unmatched_status: int = 403,
        routes: Any = None,
        dry_run: bool = False,
        endpoint_checks: bool | None = None,
        realm: str = "",
        listeners: Iterable[Listener] = (),
        name: str = "rbac",
    ) -> None:
        self.app = app
        if isinstance(rules, AccessPolicy):
            policy = rules
        else:
            policy = AccessPolicy(
                rules,
                role_permissions=role_permissions,
                deny_unmatched=deny_unmatched,
                unmatched_status=unmatched_status,
            )
        if routes is not None:
            found = rules_from_routes(routes)
            if found:
                policy = policy.with_rules_first(found)
        self.policy = policy
        self.dry_run = dry_run
        self.realm = realm
        self.name = name
        self.events = Publisher(listeners)
        self.endpoint_checks = endpoint_checks
        self._active = policy.active
        self._match = policy.rules_for
        self._check = policy.check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        if principal is not None and not isinstance(principal, Principal):
            principal = None
        if self._active:
            denial = self.judge(scope, principal)
            if denial is not None and not self.dry_run:
                await self.refuse(scope, send, denial)
                return
        await self.forward(scope, receive, send, principal)

    def judge(self, scope: Scope, principal: Principal | None) -> Denial | None:
        """The denial the rules give ``principal`` for this request (reported to the log
        in dry run and to listeners), or None when they let it through."""
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        path = normalize_path(scope.get("path") or "/")
        rules = self._match(method, path) if path is not None else None
        denial = None
        route = ""
        if rules is not None:
            check = self._check
            for rule in rules:
                denial = check(principal, rule)
                if denial is not None:
                    route = rule.route
                    break
        elif path is None:
            denial = Denial(400, "bad_path", "the path has a '.' or '..' segment")
        elif self.policy.deny_unmatched:
            status = self.policy.unmatched_status
            detail = "no such resource" if status == 404 else "no rule grants access"
            denial = Denial(status, "unmatched", detail)
        if denial is not None:
            self._report(denial, method, route, principal)
        return denial

    @property
    def checks_endpoints(self) -> bool:
        """Endpoints may check access themselves (`requires`, `require`): `forward` then
        gives them the context they read; else it only calls the app."""
        checks = self.endpoint_checks
        return bool(checks or (checks is None and _in_use))

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal | None
    ) -> None:
        """Run the app for a request the rules let through, answering the `Forbidden` or
        `AuthenticationFailed` an endpoint's own check (`requires`, `require`) raises."""
        if not self.checks_endpoints:
            await self.app(scope, receive, send)
            return
        token = _current.set(_Context(self, principal))
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except (Forbidden, AuthenticationFailed) as exc:
            # Raised by `requires` / `require` (or the app) before answering: ours to answer.
            if started:
                raise
            await self.refuse(scope, send, denial_of(exc), exc)
        finally:
            _current.reset(token)

    def _report(self, denial: Denial, method: str, route: str, principal: Principal | None) -> None:
        subject = principal.subject if principal is not None else ""
        if self.dry_run:
            _log.warning(
                "dry run: would refuse %s %s (%s, subject %r): %s",
                method,
                route or "<unmatched>",
                denial.reason,
                subject,
                denial.detail,
            )
        if self.events.listeners:
            self.events.publish(
                AccessDenied(self.name, method, route, subject, denial.reason, self.dry_run)
            )

    async def refuse(
        self,
        scope: Scope,
        send: Send,
        denial: Denial,
        exc: AuthenticationFailed | Forbidden | None = None,
    ) -> None:
        error = exc.error if isinstance(exc, AuthenticationFailed) else ""
        www = challenge(denial, self.realm, error)
        headers = [(b"www-authenticate", www)] if www is not None else []
        extra = {"required_scope": denial.scope} if denial.scope else None
        await send_problem(scope, send, denial.status, denial.detail, headers=headers, extra=extra)


def rules_from_routes(routes: Any) -> list[Rule]:
    """Rules for the endpoints of ``routes`` (an app or a list of routes) that carry
    `requires` or depend on `require`, one per method and path.

    Starlette's ``Route``/``Mount`` and FastAPI's ``APIRoute`` are understood; other route
    types are skipped (their decorators still check when the endpoint runs).
    """
    found: list[Rule] = []
    _walk(getattr(routes, "routes", routes), "", found)
    return found


def _route_rule(route: str, rule: Rule) -> Rule | None:
    try:
        return Rule(
            route,
            scopes=rule.scopes,
            roles=rule.roles,
            permissions=rule.permissions,
            anonymous=rule.anonymous,
        )
    except ConfigurationError as exc:
        # A convertor of the app's own: its endpoint still checks when it runs.
        _log.warning(
            "authorization: route %r not compiled (%s); checked in the endpoint", route, exc
        )
        return None


def _walk(routes: Iterable[Any], prefix: str, found: list[Rule]) -> None:
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        children = getattr(route, "routes", None)
        if children is not None and not hasattr(route, "endpoint"):
            _walk(children, prefix + path, found)
            continue
        rules = [*getattr(getattr(route, "endpoint", None), _MARK, ())]
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            _dependency_rules(dependant, rules)
        if not rules:
            continue
        methods = getattr(route, "methods", None)
        spec = ",".join(sorted(methods)) if methods else "*"
        for rule in rules:
            made = _route_rule(f"{spec} {prefix + path}", rule)
            if made is not None:
                found.append(made)


def _dependency_rules(dependant: Any, rules: list[Rule]) -> None:
    for sub in getattr(dependant, "dependencies", ()):
        rules.extend(getattr(getattr(sub, "call", None), _MARK, ()))
        _dependency_rules(sub, rules)


def _enforce(rules: Sequence[Rule]) -> None:
    context = _current.get()
    if context is None:
        raise ConfigurationError(
            "@requires needs AuthorizationMiddleware in the stack (it finds the principal)"
        )
    context.enforce(rules, "")


def requires(
    *,
    scopes: str | Iterable[str] = (),
    roles: str | Iterable[str] = (),
    permissions: str | Iterable[str] = (),
    anonymous: bool = False,
) -> Callable[[F], F]:
    """Mark an endpoint (sync or async) with what it requires, and check it on each call.

    The check raises `Forbidden` (or `AuthenticationFailed` when there is no principal),
    which `AuthorizationMiddleware` answers with the same 401/403 as its own rules; the
    middleware must be in the stack. Decorators stack: every one must pass.

    Raises:
        ConfigurationError: a name that does not parse.
    """
    global _in_use
    rule = Rule(scopes=scopes, roles=roles, permissions=permissions, anonymous=anonymous)
    _in_use = True

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                _enforce((rule,))
                return await func(*args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                _enforce((rule,))
                return func(*args, **kwargs)

            wrapper = sync_wrapper
        setattr(wrapper, _MARK, (*getattr(func, _MARK, ()), rule))
        return cast(F, wrapper)

    return decorate


def require(
    *,
    scopes: str | Iterable[str] = (),
    roles: str | Iterable[str] = (),
    permissions: str | Iterable[str] = (),
    anonymous: bool = False,
) -> Callable[..., Any]:
    """A FastAPI dependency that checks the request's principal and returns it.

    ``Depends(require(scopes="write"))`` in a route's parameters or ``dependencies=``.
    Without `AuthorizationMiddleware` in the stack, scopes and roles are still checked
    (permissions need its role mapping) and the raised `Forbidden` needs
    `authorization_error_handler` registered to become a 403.

    Raises:
        ConfigurationError: a name that does not parse.
    """
    from starlette.requests import HTTPConnection

    global _in_use
    rule = Rule(scopes=scopes, roles=roles, permissions=permissions, anonymous=anonymous)
    _in_use = True

    async def dependency(connection: HTTPConnection) -> Principal | None:
        principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)
        if not isinstance(principal, Principal):
            principal = None
        context = _current.get()
        if context is not None:
            context.enforce((rule,), connection.scope.get("method", "GET"))
            return principal
        if rule.permissions:
            raise ConfigurationError(
                "require(permissions=...) needs AuthorizationMiddleware (its role mapping)"
            )
        denial = AccessPolicy().check(principal, rule)
        if denial is not None:
            raise error_of(denial)
        return principal

    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "connection", inspect.Parameter.KEYWORD_ONLY, annotation=HTTPConnection
            )
        ],
        return_annotation=Principal | None,
    )
    setattr(dependency, _MARK, (rule,))
    return dependency


async def authorization_error_handler(request: Any, exc: Exception) -> Any:
    """A Starlette/FastAPI exception handler answering `Forbidden` and
    `AuthenticationFailed` as the middleware does:
    ``app.add_exception_handler(Forbidden, authorization_error_handler)``."""
    from starlette.responses import Response

    if not isinstance(exc, Forbidden | AuthenticationFailed):
        raise exc
    denial = denial_of(exc)
    error = exc.error if isinstance(exc, AuthenticationFailed) else ""
    www = challenge(denial, "", error)
    headers = {"cache-control": "no-store"}
    if www is not None:
        headers["www-authenticate"] = www.decode("latin-1")
    extra = {"required_scope": denial.scope} if denial.scope else None
    return Response(
        problem_body(denial.status, denial.detail, extra),
        status_code=denial.status,
        headers=headers,
        media_type="application/problem+json",
    )
