"""VersionMiddleware: versions from the path, Accept-Version or the Accept media type;
404/406 refusals; rewriting; Deprecation, Sunset and Vary headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.versioning import (
    API_VERSION_SCOPE_KEY,
    Deprecation,
    VersionMiddleware,
    api_version,
)

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
SUNSET = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": b""})


async def call(
    middleware: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "headers": headers or [],
    }
    await middleware(scope, receive, send)
    body = sent[1].get("body", b"")
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(body) if body else None


def make(**kwargs: Any) -> tuple[VersionMiddleware, Recorder]:
    recorder = Recorder()
    kwargs.setdefault("deprecated", {"v1": Deprecation(SINCE, SUNSET, "https://example.com/v1")})
    return VersionMiddleware(recorder, **kwargs), recorder


AV = b"accept-version"
TABLE: list[tuple[str, list[tuple[bytes, bytes]], int, str | None]] = [
    ("/api/v2/products", [], 200, "2"),
    ("/api/V3/products/1", [], 200, "3"),
    ("/api/v3", [], 200, "3"),
    ("/api/v2/products", [(AV, b"2")], 200, "2"),
    ("/api/products", [], 200, "1"),
    ("/api", [], 200, "1"),
    ("/api/products", [(AV, b"3")], 200, "3"),
    ("/api/products", [(AV, b"v2")], 200, "2"),
    ("/api/products", [(b"accept", b"application/json; version=2")], 200, "2"),
    ("/api/products", [(b"accept", b'text/html, application/json;q=0.9;version="v3"')], 200, "3"),
    ("/api/products", [(AV, b"2"), (b"accept", b"application/json; version=3")], 200, "2"),
    ("/api/videos", [], 200, "1"),
    ("/api/v9/products", [], 404, None),
    ("/api/v2.1/products", [], 404, None),
    ("/api/products", [(AV, b"9")], 406, None),
    ("/api/products", [(AV, b"<script>")], 406, None),
    ("/api/products", [(AV, b"")], 406, None),
    ("/api/products", [(b"accept", b"application/json; version=7")], 406, None),
    ("/api/v2/products", [(AV, b"3")], 200, "2"),
    ("/elsewhere", [(AV, b"9")], 200, None),
    ("/apiary", [], 200, None),
]


@pytest.mark.parametrize(("path", "headers", "status", "version"), TABLE)
async def test_versions(
    path: str, headers: list[tuple[bytes, bytes]], status: int, version: str | None
) -> None:
    middleware, recorder = make()
    got, response_headers, problem = await call(middleware, path, headers)
    assert got == status
    if status == 200:
        assert api_version(recorder.scopes[0]) == version
        assert recorder.scopes[0]["path"] == path  # not rewritten by default
    else:
        assert response_headers[b"content-type"] == b"application/problem+json"
        assert problem["status"] == status
        if status in (404, 406):
            assert problem["versions"] == ["1", "2", "3"]
        assert "<script>" not in problem["detail"]


async def test_deprecated_versions_are_announced() -> None:
    middleware, _ = make()
    _, headers, _ = await call(middleware, "/api/v1/products")
    assert headers[b"deprecation"] == b"@%d" % int(SINCE.timestamp())
    assert headers[b"sunset"] == b"Thu, 31 Dec 2026 23:59:59 GMT"
    assert headers[b"link"] == b'<https://example.com/v1>; rel="deprecation"'
    assert headers[b"x-app"] == b"1"
    assert b"vary" not in headers  # the path named the version
    _, headers, _ = await call(middleware, "/api/v2/products")
    assert b"deprecation" not in headers


async def test_negotiated_answers_vary_and_a_deprecated_default_is_announced() -> None:
    middleware, _ = make()
    _, headers, _ = await call(middleware, "/api/products")
    assert headers[b"vary"] == b"Accept-Version, Accept"
    assert b"deprecation" in headers


async def test_rewrite_routes_to_the_versioned_path() -> None:
    middleware, recorder = make(rewrite=True)
    await call(middleware, "/api/products/7", [(AV, b"2")])
    await call(middleware, "/api/v3/products/7")
    assert [(s["path"], s["raw_path"]) for s in recorder.scopes] == [
        ("/api/v2/products/7", b"/api/v2/products/7"),
        ("/api/v3/products/7", b"/api/v3/products/7"),
    ]


async def test_no_default_means_no_version() -> None:
    middleware, recorder = make(default=None, rewrite=True, deprecated={})
    status, _, _ = await call(middleware, "/api/products")
    assert status == 200
    assert recorder.scopes[0][API_VERSION_SCOPE_KEY] is None
    assert recorder.scopes[0]["path"] == "/api/products"


async def test_a_site_wide_prefix_and_custom_names() -> None:
    middleware, recorder = make(
        prefix="", header="X-API-Version", media_type_parameter=None, versions=["v1", "v2"]
    )
    assert (await call(middleware, "/v2/items"))[0] == 200
    assert (await call(middleware, "/items", [(b"x-api-version", b"2")]))[0] == 200
    assert (await call(middleware, "/items", [(b"accept", b"a/b; version=5")]))[0] == 200
    assert [api_version(s) for s in recorder.scopes] == ["2", "2", "1"]


async def test_websockets_are_versioned_and_refused_by_closing() -> None:
    middleware, recorder = make()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def ws_app(scope: Scope, receive: Receive, send: Send) -> None:
        recorder.scopes.append(scope)

    middleware.app = ws_app
    await middleware({"type": "websocket", "path": "/api/v2/ws", "headers": []}, receive, send)
    await middleware({"type": "websocket", "path": "/api/v8/ws", "headers": []}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert [api_version(s) for s in recorder.scopes] == ["2", None]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Not Found"}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"versions": "1"}, "list of versions"),
        ({"versions": []}, "at least one"),
        ({"versions": ["one"]}, "not a version"),
        ({"default": "4"}, "not among"),
        ({"prefix": "api"}, "start with '/'"),
        ({"header": "accept version"}, "header name"),
        ({"deprecated": {"5": Deprecation(SINCE)}}, "not served"),
        ({"deprecated": {"1": Deprecation(datetime(2026, 1, 1))}}, "time zone"),
        ({"deprecated": {"1": Deprecation(SINCE, link='x">')}}, "plain URL"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        VersionMiddleware(Recorder(), **kwargs)


def test_deprecation_dates_in_other_zones_are_sent_in_gmt() -> None:
    plus_two = timezone(timedelta(hours=2))
    deprecation = Deprecation(SINCE.astimezone(plus_two), SUNSET.astimezone(plus_two))
    assert dict(deprecation.headers())[b"sunset"] == b"Thu, 31 Dec 2026 23:59:59 GMT"


@settings(max_examples=200, deadline=None)
@given(
    path=st.text(alphabet="/apiv0123.V-x", max_size=20).map(lambda p: "/api/" + p),
    version_header=st.one_of(st.none(), st.binary(max_size=10)),
    accept=st.one_of(st.none(), st.binary(max_size=60)),
)
async def test_any_request_gets_an_answer(
    path: str, version_header: bytes | None, accept: bytes | None
) -> None:
    headers = []
    if version_header is not None:
        headers.append((AV, version_header))
    if accept is not None:
        headers.append((b"accept", accept))
    middleware, _ = make(rewrite=True)
    status, _, _ = await call(middleware, path, headers)
    assert status in (200, 404, 406)
