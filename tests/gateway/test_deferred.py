"""Deferred refusals: authentication's 400/401 kept until the layer below the limiter."""

from __future__ import annotations

from sysdesign_kit.gateway.deferred import (
    DEFERRED_SCOPE_KEY,
    AnswerDeferred,
    DeferredAuthentication,
)
from sysdesign_kit.principal import Principal
from tests.gateway.auth_support import EchoApp, FakeAuthenticator, call

ADA = Principal("ada", scopes=frozenset({"read"}))


class Between:
    """The limiter's place: records whether a refusal is waiting, then goes on."""

    def __init__(self, app: AnswerDeferred) -> None:
        self.app = app
        self.waiting: list[bool] = []

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        self.waiting.append(DEFERRED_SCOPE_KEY in scope)
        await self.app(scope, receive, send)


def stack() -> tuple[DeferredAuthentication, Between, EchoApp]:
    app = EchoApp()
    between = Between(AnswerDeferred(app))
    bearer = FakeAuthenticator("jwt", {"good": ADA})
    return DeferredAuthentication(between, bearer=bearer, realm="api"), between, app


async def test_an_accepted_token_goes_straight_through() -> None:
    layer, between, app = stack()
    answer = await call(layer, app, [(b"authorization", b"Bearer good")])
    assert (answer.status, answer.principal) == (200, ADA)
    assert between.waiting == [False]


async def test_a_refusal_passes_the_limiters_place_then_is_answered() -> None:
    layer, between, app = stack()
    bad = await call(layer, app, [(b"authorization", b"Bearer forged")])
    assert bad.status == 401
    assert not bad.reached_app
    assert between.waiting == [True]  # counted as anonymous by whatever sits there
    assert b'error="invalid_token"' in bad.header(b"www-authenticate")[0]
    mangled = await call(layer, app, [(b"authorization", b"Bearer  two-spaces")])
    assert mangled.status == 400
    anonymous = await call(layer, app)
    assert (anonymous.status, anonymous.principal) == (200, None)
    assert between.waiting == [True, True, False]


async def test_websocket_handshakes_are_refused_at_once() -> None:
    layer, between, app = stack()
    refused = await call(layer, app, [(b"authorization", b"Bearer forged")], kind="websocket")
    assert refused.messages[0]["type"] == "websocket.close"
    assert between.waiting == []
    accepted = await call(layer, app, [(b"authorization", b"Bearer good")], kind="websocket")
    assert accepted.principal == ADA
