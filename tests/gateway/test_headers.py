"""PrincipalHeadersMiddleware: identity headers stripped from clients, added from the principal."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.headers import PrincipalHeadersMiddleware
from sysdesign_kit.principal import Principal, set_principal

ALICE = Principal(
    "alice",
    tier="premium",
    scopes=frozenset({"write", "read"}),
    roles=frozenset({"editor", "admin"}),
    tenant="acme",
    method="jwt",
)


async def forwarded(
    app_kwargs: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
    principal: Principal | None = None,
    kind: str = "http",
) -> list[tuple[bytes, bytes]]:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["headers"])

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {"type": kind, "method": "GET", "path": "/", "headers": headers}
    if principal is not None:
        set_principal(scope, principal)
    await PrincipalHeadersMiddleware(app, **app_kwargs)(scope, receive, send)
    return seen[0]


SPOOFS = [
    (b"x-user-id", b"root"),
    (b"X-User-Id", b"root"),
    (b"x_user_id", b"root"),
    (b"X_USER_ROLES", b"admin"),
    (b"x-user-scopes", b"admin"),
    (b"x-tenant-id", b"other"),
    (b"x-user-tier", b"premium"),
    (b"x-auth-method", b"mtls"),
]


async def test_spoofed_headers_are_stripped_without_a_principal() -> None:
    kept = [(b"accept", b"*/*"), (b"x-user-agent-ish", b"ok")]
    assert await forwarded({}, [*SPOOFS, *kept]) == kept


async def test_the_principal_replaces_spoofed_headers() -> None:
    headers = await forwarded({}, [*SPOOFS, (b"accept", b"*/*")], ALICE)
    assert headers == [
        (b"accept", b"*/*"),
        (b"x-user-id", b"alice"),
        (b"x-user-roles", b"admin,editor"),
        (b"x-user-scopes", b"read write"),
        (b"x-tenant-id", b"acme"),
        (b"x-user-tier", b"premium"),
        (b"x-auth-method", b"jwt"),
    ]


async def test_empty_fields_are_left_out() -> None:
    headers = await forwarded({}, [], Principal("bob"))
    assert headers == [(b"x-user-id", b"bob"), (b"x-user-tier", b"free")]


async def test_names_are_configurable_and_none_leaves_a_field_out() -> None:
    kwargs = {
        "subject": "X-Subject",
        "roles": None,
        "scopes": None,
        "tenant": "x-org",
        "tier": None,
        "method": None,
        "strip": ["x-user-roles"],
        "strip_prefixes": ["x-internal-"],
    }
    sent = [(b"x-user-roles", b"admin"), (b"x-internal-debug", b"1"), (b"x-user-scopes", b"a")]
    headers = await forwarded(kwargs, sent, ALICE)
    assert headers == [(b"x-user-scopes", b"a"), (b"x-subject", b"alice"), (b"x-org", b"acme")]


@pytest.mark.parametrize(
    ("subject", "encoded"),
    [
        ("plain-id_1.2@example.com", b"plain-id_1.2@example.com"),
        ("two words", b"two%20words"),
        ("a,b", b"a%2Cb"),
        ("100%", b"100%25"),
        ("line\r\nX-Evil: 1", b"line%0D%0AX-Evil:%201"),
        ("café", b"caf%C3%A9"),
    ],
)
async def test_values_are_percent_encoded_when_unsafe(subject: str, encoded: bytes) -> None:
    headers = await forwarded({"tier": None}, [], Principal(subject))
    assert headers == [(b"x-user-id", encoded)]
    assert unquote(encoded.decode()) == subject


async def test_websockets_are_treated_like_http_and_lifespan_passes() -> None:
    assert await forwarded({}, SPOOFS, kind="websocket") == []
    assert await forwarded({}, SPOOFS, kind="lifespan") == SPOOFS


async def test_the_cache_is_bounded() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    middleware = PrincipalHeadersMiddleware(app)
    for i in range(5000):
        scope: Scope = {"type": "http", "headers": []}
        set_principal(scope, Principal(f"user-{i}"))
        await middleware(scope, receive, send)
        assert scope["headers"][0] == (b"x-user-id", f"user-{i}".encode())
    assert 0 < len(middleware._cache) <= 4096


@pytest.mark.parametrize(
    "kwargs",
    [{"subject": "x user"}, {"tenant": ""}, {"strip": ["bad header"]}, {"strip": "x-a"}],
)
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PrincipalHeadersMiddleware(forwarded, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(max_size=30),
    roles=st.frozensets(st.text(min_size=1, max_size=10), max_size=3),
    spoof=st.lists(
        st.tuples(
            st.sampled_from([b"x-user-id", b"X_User_Id", b"x-tenant-id", b"other"]),
            st.binary(max_size=20),
        ),
        max_size=4,
    ),
)
async def test_values_never_break_a_header(
    subject: str, roles: frozenset[str], spoof: list[tuple[bytes, bytes]]
) -> None:
    headers = await forwarded({}, spoof, Principal(subject, roles=roles))
    assert [v for k, v in headers if k == b"x-user-id"] == [
        v for k, v in headers if k.lower().replace(b"_", b"-") == b"x-user-id"
    ]
    for name, value in headers:
        if name.startswith(b"x-user") or name == b"x-tenant-id":
            assert all(0x21 <= byte < 0x7F for byte in value.replace(b" ", b"!"))
    (subject_value,) = [v for k, v in headers if k == b"x-user-id"]
    assert unquote(subject_value.decode()) == subject
    if roles:
        (roles_value,) = [v for k, v in headers if k == b"x-user-roles"]
        assert {unquote(r) for r in roles_value.decode().split(",")} == roles
