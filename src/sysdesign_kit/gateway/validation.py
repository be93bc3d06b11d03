"""``ValidationMiddleware``: JSON bodies and query strings checked against msgspec schemas per
route, before the app runs, and handed to it already decoded.

For a route with a body schema: a request whose ``Content-Type`` is not JSON
(``application/json`` or ``application/*+json``, UTF-8 if a charset is named) gets 415; a
body over ``max_body_bytes`` 413; JSON that does not parse 400; JSON that parses but does
not fit the schema 422, with the failing field's path in msgspec's notation::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "the request body does not match the schema",
     "errors": [{"location": "body", "path": "$.items[0].qty",
                 "detail": "Expected `int`, got `str`"}]}

msgspec stops at the first error, so ``errors`` holds one entry per location (the query's
and the body's). A query schema is a ``msgspec.Struct``: every parameter arrives as a
string and is converted leniently (``"5"`` to 5, ``"true"`` to True); fields typed as lists
collect repeated parameters (``?tag=a&tag=b``).

The decoded values are left in the scope (`validated_body`, `validated_query`) for the app
to reuse, and the body is read once: the app's ``receive`` replays it as a single message,
so an app that reads it again (a framework parsing JSON) gets the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import ASGIApp, Message, Receive, Scope, Send, send_problem
from sysdesign_kit.gateway._route_table import RouteTable, normalize_path, parse_route_key
from sysdesign_kit.gateway.body_limit import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "BODY_SCOPE_KEY",
    "QUERY_SCOPE_KEY",
    "Schema",
    "ValidationMiddleware",
    "validated_body",
    "validated_query",
]

#: Where the decoded body is left for the app.
BODY_SCOPE_KEY = "sysdesign_kit.validated_body"
#: Where the decoded query parameters are left for the app.
QUERY_SCOPE_KEY = "sysdesign_kit.validated_query"
_MAX_DETAIL = 200
_MAX_QUERY_FIELDS = 1000
_MISSING_FIELD = "Object missing required field `"


@dataclass(frozen=True, slots=True)
class Schema:
    """The schemas of one route.

    Args:
        route: ``"METHOD /path/{template}"``.
        body: the type the JSON body must decode to (a ``msgspec.Struct``, a list of them,
            a dict type... anything msgspec decodes), or None for no body check.
        query: a ``msgspec.Struct`` for the query parameters, or None.
    """

    route: str
    body: Any = None
    query: Any = None


def validated_body(scope: Mapping[str, Any]) -> Any:
    """The body `ValidationMiddleware` decoded for this request (None if it did not)."""
    return scope.get(BODY_SCOPE_KEY)


def validated_query(scope: Mapping[str, Any]) -> Any:
    """The query parameters `ValidationMiddleware` decoded for this request (None if it did
    not)."""
    return scope.get(QUERY_SCOPE_KEY)


class _Compiled:
    __slots__ = ("decoder", "lists", "query")

    def __init__(self, schema: Schema) -> None:
        where = f"schema for {schema.route!r}"
        self.decoder: msgspec.json.Decoder[Any] | None = None
        if schema.body is not None:
            try:
                self.decoder = msgspec.json.Decoder(schema.body)
            except TypeError as exc:
                raise ConfigurationError(f"{where}: body type: {exc}") from exc
        self.query: Any = schema.query
        self.lists: frozenset[str] = frozenset()
        if schema.query is not None:
            if not (isinstance(schema.query, type) and issubclass(schema.query, msgspec.Struct)):
                raise ConfigurationError(f"{where}: query must be a msgspec.Struct type")
            info = msgspec.inspect.type_info(schema.query)
            if not isinstance(info, msgspec.inspect.StructType):  # pragma: no cover
                raise ConfigurationError(f"{where}: query must be a msgspec.Struct type")
            self.lists = frozenset(f.encode_name for f in info.fields if _is_list(f.type))


_SEQUENCES = (
    msgspec.inspect.ListType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
    msgspec.inspect.VarTupleType,
)


def _is_list(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(isinstance(member, _SEQUENCES) for member in kind.types)
    return isinstance(kind, _SEQUENCES)


def _error(location: str, exc: msgspec.ValidationError) -> dict[str, str]:
    text = str(exc)
    detail, sep, path = text.rpartition(" - at `")
    if sep:
        path = path.rstrip("`")
    else:
        detail, path = text, "$"
    if detail.startswith(_MISSING_FIELD):
        path = f"{path}.{detail[len(_MISSING_FIELD) :].rstrip('`')}"
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return {"location": location, "path": path, "detail": detail}


def _json_content_type(value: bytes) -> bool:
    media, _, params = value.decode("latin-1").partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, raw = param.partition("=")
        if name.strip().lower() == "charset":
            charset = raw.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                return False
    return True


class ValidationMiddleware:
    """Validate JSON bodies and query strings per route with msgspec.

    Args:
        app: the ASGI app.
        schemas: `Schema` objects, or ``{"POST /orders": OrderIn}`` for body schemas.
        max_body_bytes: the largest body read for validation (413 beyond).

    Raises:
        ConfigurationError: a route that does not parse, a type msgspec cannot decode, a
            query schema that is not a Struct, or a max_body_bytes below 1.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        schemas: Iterable[Schema] | Mapping[str, Any],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ConfigurationError(f"max_body_bytes must be an int, not {max_body_bytes!r}")
        if max_body_bytes < 1:
            raise ConfigurationError(f"max_body_bytes must be >= 1, not {max_body_bytes}")
        if isinstance(schemas, Mapping):
            schemas = [Schema(route, body=body) for route, body in schemas.items()]
        entries = []
        for schema in schemas:
            if not isinstance(schema, Schema):
                raise ConfigurationError(f"schemas must be Schema objects, not {schema!r}")
            methods, path = parse_route_key(schema.route)
            entries.append((methods, path, _Compiled(schema)))
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._table: RouteTable[_Compiled] = RouteTable(entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = normalize_path(scope.get("path", "/"))
        compiled = self._table.match(scope.get("method", "GET"), path) if path else None
        if compiled is None:
            await self.app(scope, receive, send)
            return
        errors: list[dict[str, str]] = []
        if compiled.query is not None:
            try:
                scope[QUERY_SCOPE_KEY] = self._query(scope, compiled)
            except msgspec.ValidationError as exc:
                errors.append(_error("query", exc))
            except ValueError:
                await send_problem(scope, send, 400, "the query string has too many parameters")
                return
        if compiled.decoder is not None:
            content_type = None
            declared = None
            for key, value in scope.get("headers") or ():
                if key == b"content-type":
                    content_type = value
                elif key == b"content-length":
                    declared = value
            if content_type is None or not _json_content_type(content_type):
                await send_problem(scope, send, 415, "the request body must be JSON (UTF-8)")
                return
            limit = self.max_body_bytes
            if declared is not None and declared.strip().isdigit() and int(declared) > limit:
                await _too_large(scope, send, limit)
                return
            body = await _read(receive, limit)
            if not isinstance(body, bytes):
                if body:
                    await _too_large(scope, send, limit)
                return  # or the client left
            try:
                scope[BODY_SCOPE_KEY] = compiled.decoder.decode(body)
            except msgspec.ValidationError as exc:
                errors.append(_error("body", exc))
            except msgspec.DecodeError:
                await send_problem(scope, send, 400, "the request body is not valid JSON")
                return
            receive = _replay(body, receive)
        if errors:
            detail = "the request does not match the schema"
            await send_problem(scope, send, 422, detail, extra={"errors": errors})
            return
        await self.app(scope, receive, send)

    def _query(self, scope: Scope, compiled: _Compiled) -> Any:
        raw = scope.get("query_string", b"").decode("latin-1")
        lists = compiled.lists
        data: dict[str, Any] = {}
        for name, value in parse_qsl(raw, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS):
            if name in lists:
                data.setdefault(name, []).append(value)
            elif name not in data:  # the first of repeated scalars wins
                data[name] = value
        return msgspec.convert(data, compiled.query, strict=False)


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    detail = f"the request body is larger than the {limit} bytes accepted here"
    await send_problem(scope, send, 413, detail, extra={"max_bytes": limit})


async def _read(receive: Receive, limit: int) -> bytes | bool:
    """The whole body; True past ``limit``; False if the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
