"""Method + path template -> value, compiled once and matched with one dict lookup or one
regular expression per request.

Templates are written the way Starlette and FastAPI write routes: ``/api/v1/products/{id}``,
with the convertors ``str`` (default: one segment), ``int``, ``float``, ``uuid`` and
``path`` (the rest of the path). A template ending in ``/{name:path}`` also covers the
prefix itself (``/admin/{rest:path}`` matches ``/admin``): a rule meant for everything under
a prefix must not miss the prefix.

Which entry wins: a template without parameters, matched exactly, beats every templated
one; among templated entries the first declared wins. An entry for ``GET`` covers ``HEAD``
too (servers answer HEAD with the GET route), and ``*`` covers every method.

Paths are compared the way a lenient upstream would read them: runs of ``/`` count as one,
and one trailing ``/`` is ignored. A path with a ``.`` or ``..`` segment is not matched at
all (`normalize_path` returns None): clients normalise those before sending, so only a
request crafted to make two layers disagree about the route carries them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sysdesign_kit.errors import ConfigurationError

__all__ = ["RouteTable", "normalize_path", "parse_route_key"]

V = TypeVar("V")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")
_CONVERTORS = {
    "str": "[^/]+",
    "int": "[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "path": ".*",
}
_SLASHES = re.compile(r"//+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def normalize_path(path: str) -> str | None:
    """``path`` as routes are matched: one ``/`` per run, no trailing ``/``; None when it
    carries a ``.`` or ``..`` segment."""
    if "//" not in path and "/." not in path and path[-1:] != "/":
        return path or "/"  # the common case, one scan per check
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        for segment in path.split("/"):
            if segment == "." or segment == "..":
                return None
    if len(path) > 1 and path[-1] == "/":
        path = path[:-1]
    return path or "/"


def parse_route_key(key: str) -> tuple[str, str]:
    """``"GET /x"`` -> ``("GET", "/x")``; ``"GET,POST /x"`` keeps both; ``"/x"`` -> any method.

    Raises:
        ConfigurationError: a key that is not ``[METHODS ]/path``.
    """
    text = key.strip()
    methods, _, path = text.rpartition(" ")
    methods = methods.strip() or "*"
    if not path.startswith("/"):
        raise ConfigurationError(
            f"route {key!r} must be '[METHOD ]/path' (e.g. 'GET /items/{{id}}')"
        )
    return methods, path


def _methods(spec: str, where: str) -> frozenset[str] | None:
    if spec.strip() == "*":
        return None
    methods: set[str] = set()
    for item in spec.replace("|", ",").split(","):
        method = item.strip().upper()
        if not _TOKEN.fullmatch(method):
            raise ConfigurationError(f"route {where!r}: {item!r} is not an HTTP method")
        methods.add(method)
        if method == "GET":
            methods.add("HEAD")
    return frozenset(methods)


def _pattern(template: str) -> str | None:
    """The regular expression of ``template``, or None when it has no parameters."""
    if "{" not in template:
        return None
    out: list[str] = []
    position = 0
    for match in _PARAM.finditer(template):
        out.append(re.escape(template[position : match.start()]))
        convertor = match.group(2) or "str"
        if convertor not in _CONVERTORS:
            raise ConfigurationError(
                f"template {template!r}: unknown convertor {convertor!r} "
                f"(known: {', '.join(sorted(_CONVERTORS))})"
            )
        if convertor == "path" and match.end() == len(template) and out[-1].endswith("/"):
            # "/prefix/{rest:path}" also covers "/prefix" itself.
            out[-1] = out[-1][:-1]
            out.append("(?:/.*)?")
        else:
            out.append(_CONVERTORS[convertor])
        position = match.end()
    rest = template[position:]
    if "{" in rest or "}" in rest:
        raise ConfigurationError(f"template {template!r} has an unbalanced '{{' or '}}'")
    out.append(re.escape(rest))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    methods: frozenset[str] | None
    path: str
    pattern: str | None
    value: V


class _Matcher(Generic[V]):
    __slots__ = ("regex", "static", "values")

    def __init__(self, entries: list[_Entry[V]]) -> None:
        self.static: dict[str, V] = {}
        templated: list[_Entry[V]] = []
        for entry in entries:
            if entry.pattern is None:
                self.static.setdefault(entry.path, entry.value)
            else:
                templated.append(entry)
        self.values: list[V] = [entry.value for entry in templated]
        self.regex = (
            re.compile("(?:" + "|".join(f"{e.pattern}()" for e in templated) + ")")
            if templated
            else None
        )

    def match(self, path: str) -> V | None:
        value = self.static.get(path)
        if value is not None or self.regex is None:
            return value
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return self.values[found.lastindex - 1]  # type: ignore[operator]


class RouteTable(Generic[V]):
    """Values found by request method and path.

    Args:
        entries: ``(methods, template, value)`` triples; ``methods`` is ``"*"``, one method
            or several joined by ``,``. Values must not be None.

    Raises:
        ConfigurationError: a method, template or convertor that does not parse.
    """

    __slots__ = ("_any", "_by_method", "_size")

    def __init__(self, entries: Iterable[tuple[str, str, V]]) -> None:
        parsed: list[_Entry[V]] = []
        for methods_spec, template, value in entries:
            if not template.startswith("/"):
                raise ConfigurationError(f"template {template!r} must start with '/'")
            path = normalize_path(template)
            if path is None:
                raise ConfigurationError(f"template {template!r} has a '.' or '..' segment")
            methods = _methods(methods_spec, f"{methods_spec} {template}")
            parsed.append(_Entry(methods, path, _pattern(path), value))
        named = {method for entry in parsed for method in entry.methods or ()}
        self._by_method: dict[str, _Matcher[V]] = {
            method: _Matcher([e for e in parsed if e.methods is None or method in e.methods])
            for method in named
        }
        self._any: _Matcher[V] = _Matcher([e for e in parsed if e.methods is None])
        self._size = len(parsed)

    def __len__(self) -> int:
        return self._size

    def match(self, method: str, path: str) -> V | None:
        """The value for ``method`` on the normalised ``path`` (see `normalize_path`)."""
        return self._by_method.get(method, self._any).match(path)
