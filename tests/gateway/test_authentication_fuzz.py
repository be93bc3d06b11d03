"""Hypothesis: no Authorization or API-key header value makes the middleware answer a 500,
and every challenge it sends stays one well-formed header value."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.errors import AuthenticationFailed
from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
from sysdesign_kit.principal import Principal
from tests.gateway.auth_support import EchoApp, FakeAuthenticator, call

# Printable ASCII only, no CR/LF/NUL: what a header value may hold.
CHALLENGE = re.compile(rb"[\x20-\x7e]+")


class Echoing:
    """Refuses every credential with a description quoting it: the worst case for escaping."""

    method = "echo"

    async def authenticate(self, credential: str) -> Principal:
        if credential.startswith("ok"):
            return Principal(credential[:20])
        raise AuthenticationFailed("refused", description=f"bad {credential!s}")


def middleware() -> tuple[AuthenticationMiddleware, EchoApp]:
    app = EchoApp()
    return (
        AuthenticationMiddleware(
            app, bearer=Echoing(), api_key=FakeAuthenticator("api_key", {}), required=True
        ),
        app,
    )


bearerish = st.builds(
    lambda scheme, sep, token: scheme + sep + token,
    st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b"", b"Bear er"]),
    st.sampled_from([b" ", b"  ", b"\t", b"", b" \x00"]),
    st.binary(max_size=64),
)
header_value = st.one_of(st.binary(max_size=300), bearerish)


def check(status: int, headers: list[tuple[bytes, bytes]]) -> None:
    assert status in (200, 400, 401)
    for name, value in headers:
        if name == b"www-authenticate":
            assert CHALLENGE.fullmatch(value), value


@settings(max_examples=300, deadline=None)
@given(value=header_value)
async def test_authorization_header_never_500(value: bytes) -> None:
    layer, app = middleware()
    answer = await call(layer, app, [(b"authorization", value)])
    check(answer.status, answer.headers)


@settings(max_examples=200, deadline=None)
@given(value=header_value)
async def test_api_key_header_never_500(value: bytes) -> None:
    layer, app = middleware()
    answer = await call(layer, app, [(b"x-api-key", value)])
    check(answer.status, answer.headers)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.sampled_from([b"authorization", b"x-api-key"]), header_value), max_size=4
    )
)
async def test_any_mix_of_credential_headers_never_500(values: list[tuple[bytes, bytes]]) -> None:
    layer, app = middleware()
    answer = await call(layer, app, values)
    check(answer.status, answer.headers)


def _by_grammar(value: bytes) -> bytes | None:
    """The token RFC 6750's grammar finds in ``value``, or None: the regex alone."""
    match = re.fullmatch(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([0-9A-Za-z._~+/-]+=*)", value)
    if match is None or match.group(1).lower() != b"bearer":
        return None
    return match.group(2)


token_bytes = st.sampled_from(list(b"aZ09._~+/-= \t\x00\xff!"))
tokenish = st.builds(
    lambda prefix, body: prefix + bytes(body),
    st.sampled_from([b"Bearer ", b"bearer ", b"Bearer  ", b"Bearer", b"Basic "]),
    st.lists(token_bytes, max_size=24),
)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(tokenish, st.binary(max_size=40)))
def test_bearer_fast_path_agrees_with_the_grammar(value: bytes) -> None:
    layer, _ = middleware()
    parsed = layer._parse_bearer(value)
    expected = _by_grammar(value.strip(b" \t"))
    assert (parsed if type(parsed) is bytes else None) == expected
