"""The demo's gateway scenario: tokens accepted and refused, RBAC, validation and tiers.

Every token is minted by the demo's own key at the simulated clock's time (the app judges
``exp`` and ``iat`` on that clock), so every answer is the same on every run. The report
shows what came back: the status, and the part of the answer that says why (the
``WWW-Authenticate`` error, the tier in ``RateLimit-Policy``, the failing field of a 422).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette

from reference_system.demo_keys import ALGORITHM, AUDIENCE, ISSUER, DemoKeys
from reference_system.report import Tally
from sysdesign_kit.clock import Clock

__all__ = ["GatewayCase", "format_gateway", "run_gateway_scenario"]

_PRODUCT = "/api/v1/products/7"
_ORDERS = "/api/v1/orders"
_ERROR = re.compile(r'error="([^"]*)"')


@dataclass(frozen=True, slots=True)
class GatewayCase:
    """One request of the scenario and what came back."""

    request: str
    credential: str
    status: int
    why: str


def _why(response: httpx.Response) -> str:
    """The part of an answer that says why it is what it is."""
    status = response.status_code
    challenge = _ERROR.search(response.headers.get("www-authenticate", ""))
    if challenge is not None:
        scope = re.search(r'scope="([^"]*)"', response.headers["www-authenticate"])
        return challenge.group(1) + (f" (needs {scope.group(1)})" if scope else "")
    if status == 422 and "errors" in response.text:
        error = response.json()["errors"][0]
        return f"{error['path']}: {error['detail']}"
    if status == 201:
        order = response.json()
        return f"order {order['id']} placed, {order['total']:.2f} {order['currency']}"
    if status == 200 and response.request.url.path.startswith("/api/v1/products/"):
        tier = response.headers["ratelimit-policy"].split(";")[0].strip('"')
        return f"tier {tier}, X-Cache {response.headers['x-cache']}"
    if status == 200 and response.request.url.path.startswith("/api/v1/users/"):
        user = response.json()
        return f"{user['id']}: tier {user['tier']}, {user['orders']} order(s)"
    if status == 200:
        return "the caller's own order"
    if status == 204:
        return "deleted; its cached copy dropped"
    if status == 401:
        return "no credentials: a Bearer challenge without an error"
    detail = ""
    if response.headers.get("content-type", "").endswith("json"):
        detail = str(response.json().get("detail", ""))
    if "x-cache" in response.headers:
        detail += f", X-Cache {response.headers['x-cache']}"
    return detail


def _tampered(token: str) -> str:
    """``token`` with its payload claiming the premium tier, the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tier"] = "premium"
    raw = json.dumps(claims, separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def run_gateway_scenario(
    app: Starlette, *, clock: Clock, keys: DemoKeys, other_key: DemoKeys
) -> tuple[list[GatewayCase], list[Tally]]:
    """Send the gateway's cases, then a burst per tier, to ``app``.

    Args:
        app: the reference system (from `create_app`).
        clock: the app's clock; tokens are issued at its time.
        keys: the key the app trusts (``app.state.jwt_keys``).
        other_key: a key the app does not trust (its tokens must be refused).

    Returns:
        The cases in order, and one `Tally` per tier burst.
    """

    def token(sub: str, scope: str, *, tier: str = "free", roles: tuple[str, ...] = ()) -> str:
        return keys.mint(sub=sub, tier=tier, scope=scope, roles=roles, now=clock.time())

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    now = clock.time()
    alice = token("alice", "read write")
    reader = token("alice", "read")
    order = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 7}]}
    # (method, path, credential shown, headers, JSON body)
    script: list[tuple[str, str, str, dict[str, str], object]] = [
        ("GET", _PRODUCT, "none (anonymous)", {}, None),
        ("GET", _PRODUCT, "token: free, scope read", bearer(reader), None),
        ("GET", _PRODUCT, "X-API-Key demo-premium-key", {"X-API-Key": "demo-premium-key"}, None),
        ("GET", _PRODUCT, "token: scope write only", bearer(token("alice", "write")), None),
        ("GET", _PRODUCT, "token signed by another key", bearer(other_key.mint(now=now)), None),
        ("GET", _PRODUCT, "token expired an hour ago",
         bearer(keys.mint(sub="alice", ttl=3600, now=now - 7200)), None),
        ("GET", _PRODUCT, "token's payload edited to premium", bearer(_tampered(reader)), None),
        ("GET", _PRODUCT, "malformed: 'Authorization: Bearer'", {"Authorization": "Bearer"},
         None),
        ("POST", _ORDERS, "none (anonymous)", {}, order),
        ("POST", _ORDERS, "token: scope read", bearer(reader), order),
        ("POST", _ORDERS, "token: scope read write", bearer(alice), order),
        ("POST", _ORDERS, "token: scope read write, quantity 0", bearer(alice),
         {"items": [{"product_id": 1, "quantity": 0}]}),
        ("GET", f"{_ORDERS}/1", "token: alice, scope read", bearer(reader), None),
        ("GET", f"{_ORDERS}/1", "token: bob, scope read", bearer(token("bob", "read")), None),
        ("GET", "/api/v1/users/me", "token: alice, scope read", bearer(reader), None),
        ("DELETE", _PRODUCT, "token: scope admin, no admin role",
         bearer(token("carol", "read write admin", tier="premium")), None),
        ("DELETE", _PRODUCT, "token: role admin",
         bearer(token("root", "read", tier="premium", roles=("admin",))), None),
        ("GET", _PRODUCT, "none (anonymous)", {}, None),
    ]  # fmt: skip
    cases: list[GatewayCase] = []
    tallies: list[Tally] = []
    transport = httpx.ASGITransport(app=app, client=("198.51.100.50", 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as client:
        for method, path, credential, headers, body in script:
            response = await client.request(method, path, headers=headers, json=body)
            cases.append(GatewayCase(f"{method} {path}", credential, response.status_code,
                                     _why(response)))  # fmt: skip
        bursts = [
            ("anonymous: 25 reads", "198.51.100.51", {}),
            ("token, tier free: 105 reads", "198.51.100.52", bearer(token("dave", "read"))),
            (
                "token, tier premium: 105 reads",
                "198.51.100.53",
                bearer(token("erin", "read", tier="premium")),
            ),
        ]
        for title, ip, headers in bursts:
            tally = Tally(title, ip)
            count = 25 if not headers else 105
            burst = httpx.ASGITransport(app=app, client=(ip, 40_000))
            async with httpx.AsyncClient(transport=burst, base_url="http://reference.test") as c:
                for i in range(count):
                    tally.record(await c.get(f"/api/v1/products/{i % 5 + 1}", headers=headers))
            tallies.append(tally)
    return cases, tallies


def format_gateway(cases: list[GatewayCase], tallies: list[Tally]) -> list[str]:
    """The gateway section of the demo's report."""
    request_width = max(len(case.request) for case in cases)
    credential_width = max(len(case.credential) for case in cases)
    lines = [
        "",
        f"gateway: JWT ({ALGORITHM}, issuer {ISSUER}, audience {AUDIENCE}) + RBAC + "
        "validation, tokens minted on the simulated clock",
        f"  {'request':<{request_width}}  {'credential':<{credential_width}}  answer",
    ]
    lines += [
        f"  {case.request:<{request_width}}  {case.credential:<{credential_width}}  "
        f"{case.status}  {case.why}".rstrip()
        for case in cases
    ]
    width = max(len(tally.title) for tally in tallies)
    lines += ["", "  tiers come from the token's tier claim (rate limits within one minute):"]
    for tally in tallies:
        answers = ", ".join(f"{status} x{n}" for status, n in sorted(tally.statuses.items()))
        by = ", ".join(f"{policy} x{n}" for policy, n in sorted(tally.denied_by.items()))
        lines.append(
            f"  {tally.title:<{width}}  {answers}" + (f"; 429s by policy: {by}" if by else "")
        )
    lines += [
        "  400/401 are the authentication layer's (RFC 6750 error in WWW-Authenticate), sent "
        "after the rate limiter has counted them as anonymous,",
        "  403 and anonymous 401s RBAC's, 422 the validation's; only then does a service run",
    ]
    return lines
