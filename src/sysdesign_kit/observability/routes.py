"""The route template of a request (``/items/{item_id}``), never its raw path.

Metrics and spans are labelled by route template so that label cardinality stays bounded.
Starlette (and FastAPI, which routes with Starlette's router) records the matched route
in the shared scope: ``Router`` sets ``scope["route"]`` to the `Route` (or, for a method
mismatch, the partial match) before calling it, and a nested router inside a `Mount`
overwrites it with its own match. So once the app has run, ``scope["route"]`` is the
innermost route, and what is missing is the prefix of the mounts it sits under. That is
found once per route object by walking the top router's tree (``scope["router"]`` is the
outermost router: inner ones never replace it) and remembered.

FastAPI (0.165) no longer copies the routes of an included router into the app: it keeps
the router as one entry and, when it selects a route inside it, records the "effective
route context" (the route with the include prefix applied) in ``scope["fastapi"]``, while
``scope["route"]`` is the router's own, unprefixed route (or the included router itself
for a plain Starlette route). That context is the key then; the walk reaches the contexts
through the included router's ``effective_candidates()``.

When nothing set ``scope["route"]`` (the app is not Starlette, or a layer copied the scope
dict) and the middleware was given ``routes=``, those routes are matched here, as
Starlette would. Otherwise, and for 404s, the template is ``"unmatched"``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, cast

__all__ = ["UNMATCHED", "RouteTemplates"]

#: The route label of a request no route matched.
UNMATCHED = "unmatched"

_MAX_DEPTH = 16
_MAX_CACHED = 4096
_MOUNT_SUFFIX = "/{path}"

# A route's templates: one (template, mounts on the way) per place it is mounted at.
_Places = list[tuple[str, tuple[Any, ...]]]


class RouteTemplates:
    """Finds the route template of a request after the app has handled it.

    Args:
        routes: Starlette routes (or anything with ``.routes``, such as the app) to match
            against when the app did not record its route in the scope.
    """

    __slots__ = ("_known", "_routes")

    def __init__(self, routes: Sequence[Any] | Any | None = None) -> None:
        if routes is not None and not isinstance(routes, Sequence):
            routes = getattr(routes, "routes", routes)
        self._routes: Sequence[Any] | None = routes
        self._known: dict[int, tuple[Any, _Places]] = {}

    def resolve(self, scope: MutableMapping[str, Any], root_path: str) -> str:
        """The template for ``scope`` (``root_path`` as it was before the app ran)."""
        route = scope.get("route")
        if route is not None:
            fastapi = scope.get("fastapi")
            if fastapi:
                route = _fastapi_context(fastapi, route)
            known = self._known.get(id(route))
            if known is None or known[0] is not route:
                known = self._learn(route, scope)
            places = known[1]
            if len(places) == 1:
                return places[0][0]
            if places:
                return _pick(places, _route_path(scope.get("path", ""), root_path))
            return UNMATCHED
        if self._routes:
            child = dict(scope)
            child["root_path"] = root_path
            return _match(self._routes, child, "", 0) or UNMATCHED
        return UNMATCHED

    def _learn(self, route: Any, scope: MutableMapping[str, Any]) -> tuple[Any, _Places]:
        # One walk of the tree per route object seen for the first time; routes added to
        # the app later are found by the next walk.
        tree = self._routes
        if tree is None:
            tree = getattr(scope.get("router"), "routes", None)
        if tree and len(self._known) < _MAX_CACHED:
            found: dict[int, tuple[Any, _Places]] = {}
            _walk(tree, "", (), found, 0)
            self._known.update(found)
        known = self._known.get(id(route))
        if known is None or known[0] is not route:
            # A route outside the tree we know (built per request, or under a mount whose
            # app hides its routes): its own template, without any mount prefix.
            template = getattr(route, "path_format", None)
            known = (route, [(template, ())] if isinstance(template, str) else [])
            if len(self._known) < _MAX_CACHED:
                self._known[id(route)] = known
        return known


def _fastapi_context(fastapi: Any, route: Any) -> Any:
    """The effective route context standing for ``route``, if FastAPI recorded one."""
    context = fastapi.get("effective_route_context") if isinstance(fastapi, dict) else None
    if context is not None and (
        getattr(context, "original_route", None) is route
        or getattr(context, "starlette_route", None) is route
        or not isinstance(getattr(route, "path_format", None), str)  # the included router
    ):
        return context
    return route


def _mount_prefix(mount: Any) -> str:
    fmt: str = mount.path_format
    return fmt[: -len(_MOUNT_SUFFIX)] if fmt.endswith(_MOUNT_SUFFIX) else fmt


def _walk(
    routes: Sequence[Any],
    prefix: str,
    mounts: tuple[Any, ...],
    found: dict[int, tuple[Any, _Places]],
    depth: int,
) -> None:
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):  # a FastAPI included router
            if depth < _MAX_DEPTH:
                _walk_included(candidates(), prefix, mounts, found, depth + 1)
            continue
        template = getattr(route, "path_format", None)
        if isinstance(template, str):
            found.setdefault(id(route), (route, []))[1].append((prefix + template, mounts))
        inner = getattr(route, "routes", None)
        # A mounted app may have a `routes` that is not a route list (a method, say).
        if isinstance(inner, list | tuple) and inner and depth < _MAX_DEPTH:
            if isinstance(template, str):  # a Mount; a Host adds nothing to the path
                _walk(inner, prefix + _mount_prefix(route), (*mounts, route), found, depth + 1)
            else:
                _walk(inner, prefix, mounts, found, depth + 1)


def _walk_included(
    candidates: Sequence[Any],
    prefix: str,
    mounts: tuple[Any, ...],
    found: dict[int, tuple[Any, _Places]],
    depth: int,
) -> None:
    for context in candidates:
        if callable(getattr(context, "effective_candidates", None)):
            _walk([context], prefix, mounts, found, depth)
            continue
        effective = getattr(context, "starlette_route", None) or context
        template = getattr(effective, "path_format", None)
        if not isinstance(template, str):
            continue
        found.setdefault(id(context), (context, []))[1].append((prefix + template, mounts))
        if effective is not context:
            _walk([effective], prefix, mounts, found, depth)


def _route_path(path: str, root_path: str) -> str:
    if root_path and path.startswith(root_path) and path[len(root_path) :][:1] in ("/", ""):
        return path[len(root_path) :]
    return path


def _pick(places: _Places, path: str) -> str:
    """The place of a route mounted more than once that ``path`` went through."""
    for template, mounts in places:
        rest = path
        for mount in mounts:
            matched = mount.path_regex.match(rest)
            if matched is None:
                break
            rest = "/" + matched.group("path")
        else:
            return template
    return places[0][0]


def _match(routes: Sequence[Any], scope: dict[str, Any], prefix: str, depth: int) -> str | None:
    """Starlette's own matching, tracking the template instead of calling the endpoint."""
    from starlette.routing import Match  # only reached when the user passed Starlette routes

    partial = None
    for route in _flatten(routes, depth):
        match, child_scope = _matches(route, scope, Match)
        effective = getattr(route, "starlette_route", None) or route
        template = getattr(effective, "path_format", None)
        if match is Match.FULL:
            inner = getattr(effective, "routes", None)
            if inner and depth < _MAX_DEPTH:
                sub = {**scope, **child_scope}
                mount = _mount_prefix(effective) if isinstance(template, str) else ""
                found = _match(inner, sub, prefix + mount, depth + 1)
                if found is not None:
                    return found
            return prefix + template if isinstance(template, str) else None
        if match is Match.PARTIAL and partial is None:
            partial = prefix + template if isinstance(template, str) else None
    return partial


def _flatten(routes: Sequence[Any], depth: int) -> Iterator[Any]:
    """The routes, with each FastAPI included router replaced by its effective routes."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            if depth < _MAX_DEPTH:
                yield from _flatten(candidates(), depth + 1)
        else:
            yield route


def _matches(route: Any, scope: dict[str, Any], match: Any) -> tuple[Any, dict[str, Any]]:
    if not hasattr(route, "original_route"):
        return cast("tuple[Any, dict[str, Any]]", route.matches(scope))
    if route.starlette_route is not None:  # a FastAPI context around a Starlette route
        return cast("tuple[Any, dict[str, Any]]", route.starlette_route.matches(scope))
    # A FastAPI context around an APIRoute: its prefixed path and methods decide.
    path = _route_path(scope.get("path", ""), scope.get("root_path", ""))
    if route.path_regex.match(path) is None:
        return match.NONE, {}
    if scope.get("type") == "http" and route.methods and scope.get("method") not in route.methods:
        return match.PARTIAL, {}
    return match.FULL, {}
