"""The fused edge answers exactly as the stacked layers: the same requests, sent through a
`Gateway` built with ``fuse=True`` and one with ``fuse=False``, get the same statuses,
bodies, headers, principals, timeline stages, events and metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import Forbidden
from sysdesign_kit.events import Event
from sysdesign_kit.gateway.api_key_records import ApiKeyRecord, mint_api_key
from sysdesign_kit.gateway.api_keys import ApiKeyAuthenticator
from sysdesign_kit.gateway.edge import FusedEdge
from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
from sysdesign_kit.gateway.rbac_policy import Rule
from sysdesign_kit.gateway.stack import Gateway
from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key
from sysdesign_kit.observability.prometheus import PrometheusSink
from sysdesign_kit.principal import get_principal
from sysdesign_kit.ratelimit.tiers import tiered_limits
from tests.gateway.jwt_support import SECRET, claims, hs256

RULES = [
    Rule("GET /api/v1/products/{id}", scopes="read", anonymous=True),
    Rule("DELETE /api/v1/products/{id}", roles="admin"),
    Rule("GET /api/v1/boom", anonymous=True),
    Rule("GET /api/v1/checked", anonymous=True),
]


class Probe:
    """The app behind the gateway: echoes who called, raises on /boom, checks on /checked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        principal = get_principal(scope)
        subject = principal.subject if principal else None
        self.seen.append((subject, scope.get("sysdesign_kit.request_id")))
        if scope["path"] == "/api/v1/boom":
            raise RuntimeError("boom")
        if scope["path"] == "/api/v1/checked" and subject is None:
            raise Forbidden("a caller is needed", status=403)
        body = f"hello {subject}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": body})


class Built:
    """One gateway over its own probe, clock, limiter, registry and event log."""

    def __init__(self, *, fuse: bool, record: ApiKeyRecord, dry_run: bool = False) -> None:
        self.clock = ManualClock(0.0)  # time() 1_700_000_000
        self.probe = Probe()
        self.registry = CollectorRegistry()
        self.events: list[Event] = []
        verifier = JWTVerifier(
            StaticKeys(hmac_key(SECRET)), issuer="me", audience="api", clock=self.clock
        )
        api_keys = ApiKeyAuthenticator([record])
        limits = tiered_limits(
            anonymous="15/minute", free="6/minute", premium="100/minute", per_ip="50/minute",
            clock=self.clock,
        )  # fmt: skip
        listeners = [PrometheusSink(registry=self.registry), self.events.append]
        self.gateway = Gateway(
            observability={"listeners": listeners, "access_log": False, "server_timing": True},
            authentication={
                "bearer": JWTAuthenticator(verifier),
                "api_key": api_keys,
                "listeners": [self.events.append],
            },
            rate_limit={"limits": limits},
            authorization={
                "rules": RULES,
                "deny_unmatched": True,
                "dry_run": dry_run,
                "listeners": [self.events.append],
            },
            fuse=fuse,
        )
        self.app = self.gateway.wrap(self.probe)

    async def send(self, method: str, path: str, headers: list[tuple[str, str]]) -> Any:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, headers=headers)


def _token(**overrides: Any) -> str:
    overrides = {"roles": [], "tier": "free", **overrides}
    times = {"iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_700_000_600}
    return hs256(claims(iss="me", aud="api", **{**times, **overrides}))


def _shape(response: httpx.Response) -> tuple[Any, ...]:
    """What must match: status, body, headers (request ids and timings only by form)."""
    headers = []
    for name, value in response.headers.multi_items():
        if name == "x-request-id":
            value = "<id>" if re.fullmatch(r"[0-9a-f]{24,}|given-id-1", value) else value
        if name == "server-timing":
            value = ",".join(part.split(";")[0].strip() for part in value.split(","))
        headers.append((name, value))
    body = response.content
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        body = re.sub(rb'"instance":"[^"]*"', b"", body)
    return response.status_code, body, sorted(headers)


def _metrics(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(
        re.sub(r"le=\"[^\"]*\"", "le", line).rsplit(" ", 1)[0]
        + (" " + line.rsplit(" ", 1)[1] if "_count" in line or "_total" in line else "")
        for line in text.splitlines()
        if line and not line.startswith("#") and "_created" not in line and "_sum" not in line
        and "_bucket" not in line
    )  # fmt: skip


def _events(built: Built) -> list[tuple[Any, ...]]:
    shown = []
    for event in built.events:
        fields = {
            k: getattr(event, k)
            for k in event.__dataclass_fields__  # type: ignore[attr-defined]
            if k not in ("duration", "stages", "request_id", "retry_after")
        }
        if "stages" in event.__dataclass_fields__:  # type: ignore[attr-defined]
            fields["stages"] = tuple(name for name, _ in event.stages)  # type: ignore[attr-defined]
        shown.append((type(event).__name__, tuple(sorted(fields.items()))))
    return shown


def _requests(key: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    reader = _token(sub="ana", scope="read")
    writer = _token(sub="bo", scope="write")
    admin = _token(sub="cy", roles=["admin"], scope="read", tier="premium")
    bearer = "Bearer {}".format
    return [
        ("GET", "/api/v1/products/1", []),  # anonymous, allowed
        ("GET", "/api/v1/products/1", [("authorization", bearer(reader))]),  # verified
        ("GET", "/api/v1/products/2", [("authorization", bearer(reader))]),  # remembered
        ("GET", "/api/v1/products/2", [("authorization", bearer(writer))]),  # 403 scope
        ("GET", "/api/v1/products/2", [("authorization", bearer(writer))]),  # remembered 403
        ("DELETE", "/api/v1/products/2", [("authorization", bearer(reader))]),  # 403 role
        ("DELETE", "/api/v1/products/2", [("authorization", bearer(admin))]),
        ("DELETE", "/api/v1/products/3", [("authorization", bearer(admin))]),
        ("GET", "/api/v1/nowhere", [("authorization", bearer(reader))]),  # unmatched
        ("GET", "/api/v1/products/1", [("authorization", "Bearer not.a.token")]),  # 401
        ("GET", "/api/v1/products/1", [("authorization", "Basic abc")]),  # 401 scheme
        ("GET", "/api/v1/products/1", [("authorization", "Bearer  " + reader)]),  # 400
        ("GET", "/api/v1/products/1", [("authorization", bearer(reader) + " ")]),
        ("GET", "/api/v1/products/1", [("authorization", bearer(reader))] * 2),  # 400
        ("GET", "/api/v1/products/1", [("x-api-key", key)]),
        ("GET", "/api/v1/products/1", [("x-request-id", "given-id-1")]),
        ("GET", "/api/v1/boom", []),  # the app raises: 500
        ("GET", "/api/v1/checked", []),  # the endpoint refuses: 403
        ("GET", "/api/v1/checked", [("authorization", bearer(reader))]),
        ("GET", "/health", []),  # exempt from the limits, unmatched by the rules
        *[("GET", "/api/v1/products/9", [])] * 8,  # the anonymous tier runs out: 429
        *[("GET", "/api/v1/products/9", [("authorization", bearer(reader))])] * 4,  # free: 429
    ]


@pytest.mark.parametrize("dry_run", [False, True])
async def test_the_fused_edge_answers_as_the_stacked_layers(dry_run: bool) -> None:
    key, record = mint_api_key(subject="robot", roles=["admin"], scopes=["read"])
    fused = Built(fuse=True, record=record, dry_run=dry_run)
    stacked = Built(fuse=False, record=record, dry_run=dry_run)
    assert isinstance(fused.app, FusedEdge)
    assert not isinstance(stacked.app, FusedEdge)
    statuses = set()
    for method, path, headers in _requests(key):
        answers = [await built.send(method, path, headers) for built in (fused, stacked)]
        assert _shape(answers[0]) == _shape(answers[1]), (method, path, headers)
        statuses.add(answers[0].status_code)
        for built in (fused, stacked):
            built.clock.advance(1.0)
    expected = {200, 400, 401, 429, 500} | (set() if dry_run else {403})
    assert statuses >= expected
    assert [s for s, _ in fused.probe.seen] == [s for s, _ in stacked.probe.seen]
    assert _events(fused) == _events(stacked)
    assert _metrics(fused.registry) == _metrics(stacked.registry)


async def test_the_hot_path_really_is_fused() -> None:
    """A remembered token is served without the stacked authentication layer."""
    fused = Built(fuse=True, record=mint_api_key(subject="robot")[1])
    token = _token(sub="ana", scope="read")
    header = [("authorization", f"Bearer {token}")]
    stack_calls = 0
    below = fused.app._below  # type: ignore[union-attr]

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal stack_calls
        stack_calls += 1
        await below(scope, receive, send)

    fused.app._below = counting  # type: ignore[union-attr]
    for _ in range(3):
        assert (await fused.send("GET", "/api/v1/products/1", header)).status_code == 200
    assert stack_calls == 1  # the first use verified the token through the stack


def test_only_plans_that_can_be_fused_are() -> None:
    limits = tiered_limits()
    observed: dict[str, Any] = {"access_log": False}

    def wrapped(**options: Any) -> Any:
        return Gateway(**options).wrap(Probe())

    auth = {"bearer": JWTAuthenticator(JWTVerifier(StaticKeys(hmac_key(SECRET))))}
    assert isinstance(
        wrapped(observability=observed, authentication=auth, rate_limit={"limits": limits}),
        FusedEdge,
    )
    assert isinstance(
        wrapped(
            observability=observed, authentication=auth, rate_limit={"limits": limits},
            count_refusals=False,
        ),
        FusedEdge,
    )  # fmt: skip
    assert not isinstance(wrapped(authentication=auth, rate_limit={"limits": limits}), FusedEdge)
    assert not isinstance(wrapped(observability=observed, authentication=auth), FusedEdge)
    remote = tiered_limits(backend="redis://127.0.0.1:6379/0")
    assert not isinstance(
        wrapped(observability=observed, authentication=auth, rate_limit={"limits": remote}),
        FusedEdge,
    )
    assert not isinstance(
        wrapped(
            observability=observed, authentication=auth, rate_limit={"limits": limits},
            fuse=False,
        ),
        FusedEdge,
    )  # fmt: skip


_KEY, _RECORD = mint_api_key(subject="robot", roles=["admin"], scopes=["read"])
_TOKENS = [
    _token(sub="ana", scope="read"),
    _token(sub="bo", scope="write"),
    _token(sub="cy", roles=["admin"], scope="read", tier="premium"),
    _token(sub="dee", scope="read", exp=1_700_000_030),  # expires during a run
]
_HEADER_VALUES = st.one_of(
    st.sampled_from([f"Bearer {token}" for token in _TOKENS]),
    st.sampled_from([f"Bearer  {_TOKENS[0]}", f"bearer {_TOKENS[0]}", "Bearer", "Basic x"]),
    st.sampled_from([f"Bearer {_TOKENS[0]}  ", f"Bearer {_TOKENS[0][:-3]}", "Bearer a.b.c"]),
)
_HEADERS = st.lists(
    st.one_of(
        st.tuples(st.just("authorization"), _HEADER_VALUES),
        st.tuples(st.just("x-api-key"), st.sampled_from([_KEY, "sdk_live_nope_x"])),
        st.tuples(st.just("x-request-id"), st.sampled_from(["given-id-1", "bad id"])),
    ),
    max_size=3,
)
_REQUEST = st.tuples(
    st.sampled_from(["GET", "DELETE", "POST"]),
    st.sampled_from(["/api/v1/products/1", "/api/v1/products/2", "/api/v1/x", "/health"]),
    _HEADERS,
    st.sampled_from([0.0, 1.0, 20.0]),  # seconds before the next request
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(_REQUEST, min_size=1, max_size=25))
async def test_any_sequence_is_answered_the_same_fused_or_stacked(
    requests: list[tuple[str, str, list[tuple[str, str]], float]],
) -> None:
    fused = Built(fuse=True, record=_RECORD)
    stacked = Built(fuse=False, record=_RECORD)
    for method, path, headers, pause in requests:
        answers = [await built.send(method, path, headers) for built in (fused, stacked)]
        assert _shape(answers[0]) == _shape(answers[1]), (method, path, headers)
        for built in (fused, stacked):
            built.clock.advance(pause)
    assert [s for s, _ in fused.probe.seen] == [s for s, _ in stacked.probe.seen]
    assert _events(fused) == _events(stacked)
    assert _metrics(fused.registry) == _metrics(stacked.registry)


def test_a_remote_rate_limiter_cannot_be_fused() -> None:
    from sysdesign_kit.errors import ConfigurationError
    from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
    from sysdesign_kit.observability import ObservabilityMiddleware
    from sysdesign_kit.ratelimit.middleware import RateLimitMiddleware

    probe = Probe()
    remote = tiered_limits(backend="redis://127.0.0.1:6379/0")
    bearer = JWTAuthenticator(JWTVerifier(StaticKeys(hmac_key(SECRET))))
    parts: dict[str, Any] = {
        "stack": probe,
        "observability": ObservabilityMiddleware(probe),
        "authentication": AuthenticationMiddleware(probe, bearer=bearer),
        "rate_limit": RateLimitMiddleware(probe, limits=remote),
        "authorization": None,
        "app": probe,
    }
    with pytest.raises(ConfigurationError, match="in this process"):
        FusedEdge(**parts)
