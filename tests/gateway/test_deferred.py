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


def checked_stack(
    spent: bool | Exception,
) -> tuple[DeferredAuthentication, Between, EchoApp, FakeAuthenticator, list[bool]]:
    """A stack whose ``refused_anyway`` check answers ``spent`` (or raises it)."""
    app = EchoApp()
    between = Between(AnswerDeferred(app))
    bearer = FakeAuthenticator("jwt", {"good": ADA})
    asked: list[bool] = []

    async def refused_anyway(scope: object) -> bool:
        asked.append(True)
        if isinstance(spent, Exception):
            raise spent
        return spent

    layer = DeferredAuthentication(
        between, bearer=bearer, realm="api", refused_anyway=refused_anyway
    )
    return layer, between, app, bearer, asked


async def test_past_the_limit_nothing_is_verified_above_the_limiter() -> None:
    # The check says the limiter will refuse; here nothing refuses (the limiter let it
    # through after all), so AnswerDeferred authenticates below it.
    layer, between, app, bearer, asked = checked_stack(True)
    good = await call(layer, app, [(b"authorization", b"Bearer good")])
    assert (good.status, good.principal) == (200, ADA)
    forged = await call(layer, app, [(b"authorization", b"Bearer forged")])
    assert forged.status == 401
    assert not forged.reached_app
    assert b'error="invalid_token"' in forged.header(b"www-authenticate")[0]
    mangled = await call(layer, app, [(b"authorization", b"Bearer  two spaces")])
    assert mangled.status == 400
    twice = await call(layer, app, [(b"authorization", b"Bearer good")] * 2)
    assert twice.status == 400
    anonymous = await call(layer, app)  # nothing to verify: the check is not asked
    assert (anonymous.status, anonymous.principal) == (200, None)
    assert len(asked) == 4
    assert bearer.seen == ["good", "forged"]  # verified only below the limiter's place
    assert between.waiting == [False] * 5  # no refusal was kept: none was made above


async def test_a_failing_check_means_verify_as_usual() -> None:
    layer, between, app, bearer, asked = checked_stack(RuntimeError("limiter down"))
    good = await call(layer, app, [(b"authorization", b"Bearer good")])
    assert (good.status, good.principal) == (200, ADA)
    forged = await call(layer, app, [(b"authorization", b"Bearer forged")])
    assert forged.status == 401
    assert between.waiting == [False, True]
    assert len(asked) == 2
    assert bearer.seen == ["good", "forged"]


async def test_within_the_limit_credentials_are_verified_above_it() -> None:
    layer, between, app, bearer, asked = checked_stack(False)
    assert (await call(layer, app, [(b"authorization", b"Bearer good")])).status == 200
    assert (await call(layer, app, [(b"authorization", b"Bearer forged")])).status == 401
    assert between.waiting == [False, True]
    assert bearer.seen == ["good", "forged"]
    assert len(asked) == 2


async def test_api_keys_never_wait_on_the_check() -> None:
    # Checking an API key is cheap; asking the limiter first (a Redis round trip, say)
    # on every such request would not be.
    app = EchoApp()
    asked: list[bool] = []

    async def refused_anyway(scope: object) -> bool:
        asked.append(True)
        return True

    layer = DeferredAuthentication(
        Between(AnswerDeferred(app)),
        bearer=FakeAuthenticator("jwt", {"good": ADA}),
        api_key=FakeAuthenticator("api_key", {"key-1": ADA}),
        refused_anyway=refused_anyway,
    )
    answer = await call(layer, app, [(b"x-api-key", b"key-1")])
    assert (answer.status, answer.principal) == (200, ADA)
    assert (await call(layer, app)).status == 200
    assert asked == []
    assert (await call(layer, app, [(b"authorization", b"Bearer good")])).status == 200
    assert asked == [True]
