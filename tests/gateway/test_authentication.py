"""AuthenticationMiddleware: parsing, RFC 6750 answers, principals, events, 503s."""

from __future__ import annotations

import pytest

from sysdesign_kit.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
)
from sysdesign_kit.events import AuthFailed, AuthSucceeded, Event
from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
from sysdesign_kit.principal import Principal
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline
from tests.gateway.auth_support import EchoApp, FakeAuthenticator, call

ALICE = Principal("alice", tier="premium", scopes=frozenset({"read"}), method="jwt")
BOB = Principal("bob", method="api_key")
BEARER = 'Bearer realm="api"'
INVALID_TOKEN = 'Bearer realm="api", error="invalid_token", error_description="invalid token"'
INVALID_REQUEST = 'Bearer realm="api", error="invalid_request"'


def bearer_table() -> dict[str, Principal | BaseException]:
    return {
        "good.token": ALICE,
        "expired": AuthenticationFailed("exp in the past", description="token expired"),
        "odd": AuthenticationFailed("bad shape", error="invalid_request", description="bad"),
        "nothing": AuthenticationFailed("no creds", error="", description="no token"),
        "down": BackendUnavailable("idp refused"),
        "open": CircuitOpen("idp", retry_after=12.2),
        "bug": RuntimeError("boom"),
        "wrong": ValueError("returns junk"),
        "evil": AuthenticationFailed("x", description='say "hi"\\ \r\nX-Injected: 1 é'),
    }


def make(
    **kwargs: object,
) -> tuple[AuthenticationMiddleware, EchoApp, list[Event]]:
    app = EchoApp()
    events: list[Event] = []
    options: dict[str, object] = {
        "bearer": FakeAuthenticator("jwt", bearer_table()),
        "api_key": FakeAuthenticator("api_key", {"sdk_live_Ab12_secret": BOB}),
        "listeners": [events.append],
    }
    options.update(kwargs)
    return AuthenticationMiddleware(app, **options), app, events  # type: ignore[arg-type]


AUTH = b"authorization"
KEY = b"x-api-key"

# (id, headers, status, a WWW-Authenticate value that must be present (or None), subject)
CASES: list[tuple[str, list[tuple[bytes, bytes]], int, str | None, str | None]] = [
    ("no credentials", [], 200, None, None),
    ("valid bearer", [(AUTH, b"Bearer good.token")], 200, None, "alice"),
    ("lowercase bearer", [(AUTH, b"bearer good.token")], 200, None, "alice"),
    ("uppercase bearer", [(AUTH, b"BEARER good.token")], 200, None, "alice"),
    ("surrounding spaces", [(AUTH, b"  Bearer good.token \t")], 200, None, "alice"),
    ("valid api key", [(KEY, b"sdk_live_Ab12_secret")], 200, None, "bob"),
    ("other headers", [(b"host", b"x"), (AUTH, b"Bearer good.token")], 200, None, "alice"),
    ("b64 padding", [(AUTH, b"Bearer abc==")], 401, INVALID_TOKEN, None),
    ("unknown token", [(AUTH, b"Bearer nope")], 401, INVALID_TOKEN, None),
    (
        "expired token",
        [(AUTH, b"Bearer expired")],
        401,
        'Bearer realm="api", error="invalid_token", error_description="token expired"',
        None,
    ),
    ("authenticator says invalid_request", [(AUTH, b"Bearer odd")], 400, INVALID_REQUEST, None),
    ("authenticator says no error", [(AUTH, b"Bearer nothing")], 401, BEARER, None),
    ("empty header", [(AUTH, b"")], 400, INVALID_REQUEST, None),
    ("scheme only", [(AUTH, b"Bearer")], 400, INVALID_REQUEST, None),
    ("scheme and space", [(AUTH, b"Bearer ")], 400, INVALID_REQUEST, None),
    ("two spaces", [(AUTH, b"Bearer  good.token")], 400, INVALID_REQUEST, None),
    ("tab separator", [(AUTH, b"Bearer\tgood.token")], 400, INVALID_REQUEST, None),
    ("space inside token", [(AUTH, b"Bearer good token")], 400, INVALID_REQUEST, None),
    ("comma in token", [(AUTH, b"Bearer a,b")], 400, INVALID_REQUEST, None),
    ("quote in token", [(AUTH, b'Bearer a"b')], 400, INVALID_REQUEST, None),
    ("padding inside", [(AUTH, b"Bearer a=b")], 400, INVALID_REQUEST, None),
    ("non-ascii latin-1", [(AUTH, b"Bearer caf\xe9")], 400, INVALID_REQUEST, None),
    ("utf-8 bytes", [(AUTH, "Bearer tökén".encode())], 400, INVALID_REQUEST, None),
    ("nul byte", [(AUTH, b"Bearer a\x00b")], 400, INVALID_REQUEST, None),
    ("crlf", [(AUTH, b"Bearer a\r\nX-Evil: 1")], 400, INVALID_REQUEST, None),
    ("bad scheme charset", [(AUTH, b"Bea(rer good")], 400, INVALID_REQUEST, None),
    ("100 KiB token", [(AUTH, b"Bearer " + b"a" * 100 * 1024)], 400, INVALID_REQUEST, None),
    (
        "two Authorization headers",
        [(AUTH, b"Bearer good.token"), (AUTH, b"Bearer good.token")],
        400,
        INVALID_REQUEST,
        None,
    ),
    (
        "bearer and api key",
        [(AUTH, b"Bearer good.token"), (KEY, b"sdk_live_Ab12_secret")],
        400,
        INVALID_REQUEST,
        None,
    ),
    ("two api keys", [(KEY, b"a"), (KEY, b"b")], 400, INVALID_REQUEST, None),
    ("basic scheme", [(AUTH, b"Basic dXNlcjpwYXNz")], 401, BEARER, None),
    ("bare other scheme", [(AUTH, b"Negotiate")], 401, BEARER, None),
    ("digest params", [(AUTH, b'Digest username="a", realm="b"')], 401, BEARER, None),
    ("unknown api key", [(KEY, b"sdk_live_zz_nope")], 401, None, None),
    ("malformed api key", [(KEY, b"sdk live")], 400, None, None),
    ("api key non-ascii", [(KEY, b"\xff\xfe")], 400, None, None),
]


@pytest.mark.parametrize(
    ("headers", "status", "challenge", "subject"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_table(
    headers: list[tuple[bytes, bytes]], status: int, challenge: str | None, subject: str | None
) -> None:
    middleware, app, _ = make()
    answer = await call(middleware, app, headers)
    assert answer.status == status
    assert answer.reached_app == (status == 200)
    if status == 200:
        assert (answer.principal.subject if answer.principal else None) == subject
        return
    assert answer.header(b"content-type") == [b"application/problem+json"]
    problem = answer.json()
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    challenges = [value.decode() for value in answer.header(b"www-authenticate")]
    assert len(challenges) == 2  # Bearer and APIKey, one header field each
    if challenge is not None:
        assert any(value.startswith(challenge) for value in challenges), challenges


def test_case_table_is_large() -> None:
    assert len(CASES) >= 30


async def test_api_key_failure_puts_the_error_on_the_api_key_challenge() -> None:
    middleware, app, _ = make()
    answer = await call(middleware, app, [(KEY, b"sdk_live_zz_nope")])
    assert answer.header(b"www-authenticate") == [
        b'Bearer realm="api"',
        b'APIKey realm="api", error="invalid_token", error_description="invalid token", '
        b'header="x-api-key"',
    ]


async def test_description_is_stripped_of_what_could_break_the_header() -> None:
    middleware, app, _ = make()
    answer = await call(middleware, app, [(AUTH, b"Bearer evil")])
    bearer = answer.header(b"www-authenticate")[0]
    assert bearer == (
        b'Bearer realm="api", error="invalid_token", error_description="say hi X-Injected: 1 "'
    )
    assert answer.json()["detail"] == 'say "hi"\\ \r\nX-Injected: 1 é'  # JSON-escaped in the body


async def test_problem_never_echoes_the_credential() -> None:
    middleware, app, _ = make()
    for value in (b"Bearer s3cr3t-t0ken", b"Bearer  s3cr3t-t0ken", b"Basic s3cr3t-t0ken"):
        answer = await call(middleware, app, [(AUTH, value)])
        assert b"s3cr3t" not in answer.body
        assert all(b"s3cr3t" not in v for _, v in answer.headers)


async def test_required_refuses_anonymous_without_an_error_code() -> None:
    middleware, app, events = make(required=True)
    answer = await call(middleware, app, [])
    assert answer.status == 401
    assert answer.header(b"www-authenticate") == [
        b'Bearer realm="api"',
        b'APIKey realm="api", header="x-api-key"',
    ]
    assert answer.json()["detail"] == "authentication required"
    assert events == [AuthFailed("auth", "", "missing")]
    assert (await call(middleware, app, [(AUTH, b"Bearer good.token")])).status == 200


async def test_anonymous_principal_is_set_when_configured() -> None:
    anonymous = Principal("anonymous", tier="anonymous")
    middleware, app, _ = make(anonymous=anonymous)
    answer = await call(middleware, app, [])
    assert answer.principal is anonymous
    answer = await call(middleware, app, [(AUTH, b"Bearer good.token")])
    assert answer.principal == ALICE


async def test_events() -> None:
    middleware, app, events = make()
    await call(middleware, app, [(AUTH, b"Bearer good.token")])
    await call(middleware, app, [(KEY, b"sdk_live_Ab12_secret")])
    await call(middleware, app, [(AUTH, b"Bearer expired")])
    await call(middleware, app, [(AUTH, b"Bearer  x")])
    await call(middleware, app, [(AUTH, b"Bearer a"), (AUTH, b"Bearer b")])
    assert events == [
        AuthSucceeded("auth", "jwt", "alice"),
        AuthSucceeded("auth", "api_key", "bob"),
        AuthFailed("auth", "jwt", "invalid_token"),
        AuthFailed("auth", "jwt", "malformed"),
        AuthFailed("auth", "", "multiple_headers"),
    ]


@pytest.mark.parametrize(
    ("token", "retry_after"), [("down", b"5"), ("open", b"13"), ("bug", b"5"), ("wrong", b"5")]
)
async def test_backend_trouble_is_503_with_retry_after(
    token: str, retry_after: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    middleware, app, events = make()
    answer = await call(middleware, app, [(AUTH, b"Bearer " + token.encode())])
    assert answer.status == 503
    assert answer.header(b"retry-after") == [retry_after]
    assert answer.header(b"www-authenticate") == []
    assert answer.json()["retry_after"] == int(retry_after)
    assert not answer.reached_app
    assert events == [AuthFailed("auth", "jwt", "unavailable")]
    assert ("raised; answering 503" in caplog.text) == (token in ("bug", "wrong"))


async def test_authenticator_returning_junk_is_503() -> None:
    class Junk:
        method = "junk"

        async def authenticate(self, credential: str) -> Principal:
            return "alice"  # type: ignore[return-value]

    middleware, app, _ = make(bearer=Junk())
    assert (await call(middleware, app, [(AUTH, b"Bearer x")])).status == 503


async def test_only_configured_methods_are_read() -> None:
    app = EchoApp()
    only_keys = AuthenticationMiddleware(
        app, api_key=FakeAuthenticator("api_key", {"k": BOB}), required=True
    )
    answer = await call(only_keys, app, [(AUTH, b"Bearer good.token")])
    assert answer.status == 401
    assert answer.header(b"www-authenticate") == [b'APIKey realm="api", header="x-api-key"']
    assert (await call(only_keys, app, [(AUTH, b"Basic x"), (KEY, b"k")])).principal == BOB
    # Headers of a method not configured are not read at all, duplicates included.
    answer = await call(only_keys, app, [(AUTH, b"Bearer a"), (AUTH, b"Bearer b"), (KEY, b"k")])
    assert answer.principal == BOB
    only_bearer = AuthenticationMiddleware(app, bearer=FakeAuthenticator("jwt", {"t": ALICE}))
    answer = await call(only_bearer, app, [(KEY, b"whatever"), (AUTH, b"Bearer t")])
    assert answer.principal == ALICE
    answer = await call(only_bearer, app, [(KEY, b"a"), (KEY, b"b"), (AUTH, b"Bearer t")])
    assert answer.principal == ALICE


async def test_custom_header_and_realm() -> None:
    app = EchoApp()
    middleware = AuthenticationMiddleware(
        app,
        api_key=FakeAuthenticator("api_key", {"k": BOB}),
        api_key_header="X-Service-Key",
        realm='gateway \\ "x"'.replace('"', "").replace("\\", "/"),
        required=True,
    )
    assert (await call(middleware, app, [(b"x-service-key", b"k")])).principal == BOB
    answer = await call(middleware, app, [(b"x-api-key", b"k")])
    assert answer.header(b"www-authenticate") == [
        b'APIKey realm="gateway / x", header="x-service-key"'
    ]
    no_realm = AuthenticationMiddleware(app, api_key=FakeAuthenticator("k", {}), realm=None)
    answer = await call(no_realm, app, [(b"x-api-key", b"nope")])
    assert answer.header(b"www-authenticate") == [
        b'APIKey error="invalid_token", error_description="invalid token", header="x-api-key"'
    ]


async def test_websockets() -> None:
    middleware, app, _ = make(required=True)
    answer = await call(middleware, app, [], kind="websocket")
    assert answer.messages == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]
    answer = await call(
        middleware, app, [], kind="websocket", extensions={"websocket.http.response": {}}
    )
    assert answer.status == 401
    assert answer.json()["status"] == 401
    answer = await call(middleware, app, [(AUTH, b"Bearer good.token")], kind="websocket")
    assert answer.principal == ALICE
    off, app2, _ = make(required=True, websockets=False)
    assert (await call(off, app2, [], kind="websocket")).reached_app


async def test_other_scopes_pass_through() -> None:
    middleware, app, _ = make(required=True)
    assert (await call(middleware, app, [], kind="lifespan")).reached_app


async def test_head_answers_have_no_body() -> None:
    middleware, _, _ = make(required=True)
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "HEAD", "path": "/", "headers": []}
    await middleware(scope, None, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 401
    assert sent[1]["body"] == b""


async def test_records_its_stage_on_the_timeline() -> None:
    middleware, _, _ = make()
    timeline = Timeline()
    sent: list[object] = []

    async def send(message: object) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        TIMELINE_SCOPE_KEY: timeline,
    }
    await middleware(scope, None, send)  # type: ignore[arg-type]
    assert [name for name, _ in timeline.stages] == ["auth"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bearer": None, "api_key": None}, "at least one"),
        ({"bearer": object()}, "must implement Authenticator"),
        ({"api_key_header": "x api key"}, "api_key_header"),
        ({"api_key_header": "Authorization"}, "api_key_header"),
        ({"realm": 'a"b'}, "realm"),
        ({"realm": "caf\u00e9"}, "realm"),
        ({"realm": ""}, "realm"),
        ({"anonymous": "anon"}, "anonymous"),
        ({"max_credential_length": 8}, "max_credential_length"),
        ({"max_credential_length": 1.5}, "max_credential_length"),
        ({"retry_after": 0}, "retry_after"),
    ],
)
def test_configuration_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make(**kwargs)


async def test_in_a_starlette_app_over_httpx() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sysdesign_kit.principal import get_principal

    async def whoami(request: Request) -> JSONResponse:
        principal = get_principal(request.scope)
        return JSONResponse({"subject": principal.subject if principal else None})

    app = Starlette(routes=[Route("/whoami", whoami)])
    app.add_middleware(
        AuthenticationMiddleware, bearer=FakeAuthenticator("jwt", {"good.token": ALICE})
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/whoami", headers={"Authorization": "Bearer good.token"})
        assert response.json() == {"subject": "alice"}
        assert (await client.get("/whoami")).json() == {"subject": None}
        response = await client.get("/whoami", headers={"Authorization": "Bearer bad"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID_TOKEN
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["cache-control"] == "no-store"
