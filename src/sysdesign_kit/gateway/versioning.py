"""``VersionMiddleware``: which API version a request is for, from its path or its headers.

Under the API prefix (``/api`` by default) a request names its version one of three ways,
tried in this order:

1. the path: ``/api/v2/products`` (authoritative: the headers are then not read);
2. an ``Accept-Version: 2`` header (``v2`` is accepted too);
3. a media-type parameter: ``Accept: application/json; version=2``.

The version found is left in ``scope["sysdesign_kit.api_version"]`` (`api_version`);
requests outside the prefix pass untouched and carry none. With ``rewrite=True`` a request
for an unversioned path is routed to the versioned one (``/api/products`` with
``Accept-Version: 2`` is served by ``/api/v2/products``), and its responses carry
``Vary: Accept-Version, Accept`` so that caches keep the versions apart.

========================================  =================================================
the request                               the answer
========================================  =================================================
``/api/v9/...``, v9 not served            404 problem (no such resource), lists the versions
header names a version not served         406 problem (nothing acceptable), lists them
no version anywhere                       the ``default`` version (None: none, passes)
a deprecated version                      served, with ``Deprecation`` (RFC 9745),
                                          ``Sunset`` (RFC 8594) and ``Link`` headers
========================================  =================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import ASGIApp, Message, Receive, Scope, Send, send_problem

__all__ = ["API_VERSION_SCOPE_KEY", "Deprecation", "VersionMiddleware", "api_version"]

#: Where the request's API version (``"2"``) is left for the layers below.
API_VERSION_SCOPE_KEY = "sysdesign_kit.api_version"
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SEGMENT = re.compile(r"[vV]([0-9]+(?:\.[0-9]+)?)")
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_VARY = (b"vary", b"Accept-Version, Accept")
_MAX_HEADER = 4096


def api_version(scope: Mapping[str, Any]) -> str | None:
    """The API version `VersionMiddleware` found for this request, if any."""
    value = scope.get(API_VERSION_SCOPE_KEY)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Deprecation:
    """How a deprecated version is announced on its responses.

    Args:
        since: when it was (or will be) deprecated: ``Deprecation: @<epoch seconds>``.
        sunset: when it stops being served: ``Sunset: <HTTP-date>`` (optional).
        link: a page about the deprecation: ``Link: <url>; rel="deprecation"`` (optional).
    """

    since: datetime
    sunset: datetime | None = None
    link: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers announcing it."""
        since = _aware(self.since, "since")
        out = [(b"deprecation", b"@%d" % int(since.timestamp()))]
        if self.sunset is not None:
            sunset = _aware(self.sunset, "sunset")
            out.append((b"sunset", format_datetime(sunset.astimezone(UTC), usegmt=True).encode()))
        if self.link is not None:
            if any(c in self.link for c in '<>"\r\n') or not self.link.isascii():
                raise ConfigurationError(f"deprecation link {self.link!r} is not a plain URL")
            out.append((b"link", f'<{self.link}>; rel="deprecation"'.encode("ascii")))
        return out


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise ConfigurationError(f"deprecation {what} {moment!r} needs a time zone")
    return moment


def _version(text: str, what: str) -> str:
    value = text.strip()
    if value[:1] in ("v", "V"):
        value = value[1:]
    if not _VERSION.fullmatch(value):
        raise ConfigurationError(f"{what} {text!r} is not a version like '2' or 'v2'")
    return value


class VersionMiddleware:
    """Find each request's API version; refuse versions not served; announce deprecations.

    Args:
        app: the ASGI app.
        versions: the versions served (``"1"`` or ``"v1"``).
        default: the version of requests that name none (None: they carry no version).
        prefix: the path prefix of the versioned API (``""`` for the whole site).
        header: the request header naming a version.
        media_type_parameter: the ``Accept`` media-type parameter naming a version (None:
            not read).
        deprecated: `Deprecation` per version.
        rewrite: route a request for an unversioned path to the versioned path.

    Raises:
        ConfigurationError: a version that is not like ``2``, a default or deprecated
            version not served, a prefix that is not a path, or a header name that is not
            one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        versions: Iterable[str] = ("1", "2", "3"),
        default: str | None = "1",
        prefix: str = "/api",
        header: str = "accept-version",
        media_type_parameter: str | None = "version",
        deprecated: Mapping[str, Deprecation] | None = None,
        rewrite: bool = False,
    ) -> None:
        if isinstance(versions, str):
            raise ConfigurationError("versions must be a list of versions, not one string")
        served = tuple(dict.fromkeys(_version(v, "version") for v in versions))
        if not served:
            raise ConfigurationError("versions must name at least one version")
        self.versions = frozenset(served)
        self._listed = list(served)
        self.default = _version(default, "default") if default is not None else None
        if self.default is not None and self.default not in self.versions:
            raise ConfigurationError(f"default {default!r} is not among the versions served")
        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ConfigurationError(f"prefix {prefix!r} must start with '/'")
        self.prefix = prefix
        self._raw_prefix = prefix.encode("latin-1")
        name = header.strip().lower()
        if not name or not set(name) <= _TCHAR:
            raise ConfigurationError(f"header {header!r} is not a valid HTTP header name")
        self.header = name.encode("ascii")
        self.parameter = media_type_parameter.lower() if media_type_parameter else None
        self._deprecated: dict[str, list[tuple[bytes, bytes]]] = {}
        for version, deprecation in (deprecated or {}).items():
            key = _version(version, "deprecated version")
            if key not in self.versions:
                raise ConfigurationError(f"deprecated version {version!r} is not served")
            self._deprecated[key] = deprecation.headers()
        self.rewrite = rewrite
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "/")
        prefix = self.prefix
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            await self.app(scope, receive, send)
            return
        rest = path[len(prefix) :]
        segment, _, _ = rest[1:].partition("/")
        in_path = _SEGMENT.fullmatch(segment) if segment[:1] in ("v", "V") else None
        if in_path is not None:
            version = in_path.group(1)
            if version not in self.versions:
                await self._refuse(scope, send, 404, f"API version {version} does not exist")
                return
            negotiated = False
        else:
            asked = self._asked(scope)
            if asked is None:
                version = self.default
            elif asked in self.versions:
                version = asked
            else:
                shown = asked if _VERSION.fullmatch(asked) else "asked for"
                await self._refuse(scope, send, 406, f"API version {shown} is not served")
                return
            negotiated = True
            if version is not None and self.rewrite:
                self._rewrite(scope, version)
        scope[API_VERSION_SCOPE_KEY] = version
        added = list(self._deprecated.get(version, ())) if version is not None else []
        if negotiated and kind == "http":
            added.append(_VARY)
        if not added or kind != "http":
            await self.app(scope, receive, send)
            return

        async def announcing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, announcing_send)

    def _asked(self, scope: Scope) -> str | None:
        """The version the headers ask for (as written, ``v`` removed), if any."""
        name = self.header
        parameter = self.parameter
        from_accept: str | None = None
        for key, value in scope.get("headers") or ():
            if key == name:
                text: str = value.decode("latin-1").strip()
                return text[1:] if text[:1] in ("v", "V") else text
            if key == b"accept" and parameter is not None and from_accept is None:
                from_accept = _accept_version(value, parameter)
        return from_accept

    def _rewrite(self, scope: Scope, version: str) -> None:
        prefix = self.prefix
        scope["path"] = f"{prefix}/v{version}{scope['path'][len(prefix) :]}"
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.startswith(self._raw_prefix):
            scope["raw_path"] = b"%s/v%s%s" % (
                self._raw_prefix,
                version.encode("ascii"),
                raw[len(self._raw_prefix) :],
            )

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        await send_problem(scope, send, status, detail, extra={"versions": self._listed})


def _accept_version(value: bytes, parameter: str) -> str | None:
    """The ``version`` parameter of the first media range in ``Accept`` that has one."""
    if len(value) > _MAX_HEADER:
        return None
    text = value.decode("latin-1")
    if "=" not in text:
        return None
    for media_range in text.split(","):
        for param in media_range.split(";")[1:]:
            key, _, raw = param.partition("=")
            if key.strip().lower() == parameter:
                found = raw.strip().strip('"')
                return found[1:] if found[:1] in ("v", "V") else found
    return None
