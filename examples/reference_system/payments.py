"""The edge's payment routes: the payment service called through `AsyncResilientTransport`.

``POST /api/v1/payments`` (``{"order_id": int, "amount": number}``, an API key required)
charges through an httpx client whose transport puts a circuit breaker in front of the
payment service, retries what failed (the charge carries ``Idempotency-Key: order-<id>``,
so retrying it is safe: the service answers a repeated key with the first capture) with
jittered exponential backoff inside a retry budget, and bounds each payment by the seed's
timeouts. What the caller gets:

- ``201`` and the capture, when the service charged (after retries, maybe);
- ``202`` ``{"status": "queued"}`` with ``Retry-After``, while the breaker is open: the
  fallback. The edge fails fast instead of waiting on a service it knows is down, and takes
  the payment for later (kept in ``Payments.queued``; the seed's order queue takes it over
  in a later issue);
- ``502`` problem+json when the service kept failing through every retry.

``GET /api/v1/payments/breaker`` shows the breaker (state, window, time left open);
``POST /admin/payments/outage`` (``{"seconds": 30, "status": 503}``) makes the payment
service fail for a while, to watch the breaker work, and ``POST /admin/payments/breaker``
(``{"action": "force_open" | "force_closed" | "reset"}``) is the operators' override; both
need a key with the ``admin`` scope.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.payment_service import PaymentService, valid_charge
from reference_system.problems import problem
from sysdesign_kit.breaker import BreakerRegistry, CircuitBreaker, CountWindow
from sysdesign_kit.clock import Clock
from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import Listener
from sysdesign_kit.http import AsyncResilientTransport, default_retry
from sysdesign_kit.principal import get_principal
from sysdesign_kit.retry import Backoff

__all__ = ["PAYMENT_BACKOFF", "PAYMENT_BREAKER", "Payments"]

#: The seed's breaker (opens at 50% failures, open 30 s, 3 trial calls), judged over the
#: last 10 calls once 5 were made: a demo's traffic is small.
PAYMENT_BREAKER: dict[str, Any] = {
    "failure_rate": 0.5,
    "open_for": 30.0,
    "half_open_calls": 3,
    "window": CountWindow(10),
    "minimum_calls": 5,
}
#: The retries' schedule: the seed's (4 calls, 1 s -> 2 s -> 4 s, full jitter).
PAYMENT_BACKOFF = Backoff(wait_initial=1.0, wait_multiplier=2.0, wait_max=30.0, jitter="full")
_SERVICE = "http://payments.internal"
_MAX_BODY = 4096


class Payments:
    """The payment routes and their resilient client.

    Args:
        service: the payment service to call (in-process, over ``httpx.ASGITransport``).
        clock: the breaker's, the retries' and the budget's clock.
        listeners: receive the breaker's and the retries' events.
        rng: the jitter's random source (seeded in the scripted demo, so that its report
            is the same on every run).
    """

    def __init__(
        self,
        service: PaymentService,
        *,
        clock: Clock,
        listeners: list[Listener],
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.breakers = BreakerRegistry(clock=clock, listeners=listeners)
        self.transport = AsyncResilientTransport(
            httpx.ASGITransport(app=service.app),
            retry=default_retry(
                clock=clock,
                listeners=listeners,
                wait_initial=PAYMENT_BACKOFF.wait_initial,
                wait_multiplier=PAYMENT_BACKOFF.wait_multiplier,
                wait_max=PAYMENT_BACKOFF.wait_max,
                jitter=PAYMENT_BACKOFF.jitter,
                rng=rng,
            ),
            breakers=self.breakers,
            breaker_settings=PAYMENT_BREAKER,
            clock=clock,
            listeners=listeners,
        )
        self.client = httpx.AsyncClient(transport=self.transport, base_url=_SERVICE)
        self.queued: list[dict[str, object]] = []
        self.routes = [
            Route("/api/v1/payments", self.pay, methods=["POST"]),
            Route("/api/v1/payments/breaker", self.breaker_status, methods=["GET"]),
            Route("/admin/payments/outage", self.outage, methods=["POST"]),
            Route("/admin/payments/breaker", self.operate, methods=["POST"]),
        ]

    @property
    def breaker(self) -> CircuitBreaker:
        """The payment service's breaker (made on the first payment)."""
        return self.transport.breaker_for(_SERVICE)

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()

    async def pay(self, request: Request) -> Response:
        """Charge one order through the breaker and retries; fall back to queueing it."""
        if get_principal(request.scope) is None:
            return problem(401, "payments need an API key (X-API-Key)")
        document = await _json(request)
        order_id = document.get("order_id") if document is not None else None
        amount = document.get("amount") if document is not None else None
        if not valid_charge(order_id, amount):
            return problem(422, 'expected {"order_id": positive int, "amount": positive number}')
        charge = {"order_id": order_id, "amount": amount}
        try:
            answer = await self.client.post(
                "/charge", json=charge, headers={"Idempotency-Key": f"order-{order_id}"}
            )
        except CircuitOpen as open_:
            self.queued.append(charge)
            # Forced open by an operator, the breaker has no end: then no Retry-After.
            known = math.isfinite(open_.retry_after)
            headers = {"Retry-After": str(max(1, math.ceil(open_.retry_after)))} if known else {}
            return JSONResponse(
                {
                    "status": "queued",
                    "order_id": order_id,
                    "detail": "the payment service is unavailable; the payment is queued "
                    "and will be charged when it recovers",
                    "retry_after": round(open_.retry_after, 3) if known else None,
                },
                status_code=202,
                headers=headers,
            )
        except httpx.TimeoutException:
            return problem(504, "the payment service did not answer in time")
        except httpx.TransportError:
            return problem(502, "the payment service could not be reached")
        if answer.status_code == 201:
            return JSONResponse(answer.json(), status_code=201)
        if answer.status_code >= 500:
            return problem(502, f"the payment service failed ({answer.status_code})")
        return problem(answer.status_code, "the payment service refused the charge")

    async def breaker_status(self, request: Request) -> Response:
        """The payment breaker as operators see it."""
        return JSONResponse(self._status())

    def _status(self) -> dict[str, object]:
        stats = self.breaker.stats()
        # A forced-open breaker has no end: JSON has no infinity, so it reads null.
        retry_after = round(stats.retry_after, 3) if math.isfinite(stats.retry_after) else None
        return {
            "name": stats.name,
            "state": stats.state.value,
            "forced": stats.forced,
            "calls": stats.calls,
            "failures": stats.failures,
            "failure_rate": round(stats.failure_rate, 3),
            "retry_after": retry_after,
            "trips": stats.trips,
            "queued_payments": len(self.queued),
            "outage_remaining": round(self.service.remaining(), 3),
        }

    async def operate(self, request: Request) -> Response:
        """Force the payment breaker open or closed, or reset it (admin scope)."""
        refused = _refuse_non_admin(request)
        if refused is not None:
            return refused
        document = await _json(request)
        action = document.get("action") if document is not None else None
        breaker = self.breaker
        actions = {
            "force_open": breaker.force_open,
            "force_closed": breaker.force_closed,
            "reset": breaker.reset,
        }
        if action not in actions:
            return problem(422, 'expected {"action": "force_open" | "force_closed" | "reset"}')
        actions[action]()
        return JSONResponse(self._status())

    async def outage(self, request: Request) -> Response:
        """Make the payment service fail for a while (admin scope)."""
        refused = _refuse_non_admin(request)
        if refused is not None:
            return refused
        document = await _json(request)
        seconds = document.get("seconds") if document is not None else None
        status = document.get("status", 503) if document is not None else None
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not 0 <= seconds <= 3600
            or status not in (500, 502, 503, 504)
        ):
            return problem(
                422, 'expected {"seconds": 0..3600, "status": 500|502|503|504 (default 503)}'
            )
        self.service.fail_for(float(seconds), status=int(status))
        return JSONResponse({"outage_seconds": seconds, "status": status})


def _refuse_non_admin(request: Request) -> Response | None:
    principal = get_principal(request.scope)
    if principal is None:
        return problem(401, "an API key with the admin scope is required")
    if "admin" not in principal.scopes:
        return problem(403, "the admin scope is required")
    return None


async def _json(request: Request) -> dict[str, Any] | None:
    body = await request.body()
    if len(body) > _MAX_BODY:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
