"""The payment service: the downstream dependency the edge calls through a breaker.

``POST /charge`` with ``{"order_id": int, "amount": number}`` captures a payment and answers
``201`` with its id. A repeated ``Idempotency-Key`` gets the first answer again, so a retried
charge is never captured twice. An `Outage` makes the service fail on command for a while
(the demo's scripted failure, or ``POST /admin/payments/outage`` when serving): every charge
then answers the outage's status (503 by default, with ``Retry-After`` when asked).

It is a separate ASGI app, reached over ``httpx.ASGITransport`` in-process: a real HTTP hop
through the edge's `AsyncResilientTransport`, with no socket to open.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.problems import problem
from sysdesign_kit.clock import Clock

__all__ = ["Outage", "PaymentService", "valid_charge"]

_MAX_BODY = 4096
_MAX_KEYS = 10_000  # remembered idempotency keys; the oldest are forgotten first


@dataclass(slots=True)
class Outage:
    """When and how the service fails: until ``until`` (on the service's clock).

    Attributes:
        until: monotonic time the outage ends (0: no outage).
        status: what every charge answers meanwhile.
        retry_after: a ``Retry-After`` value (seconds) sent with it, or None.
    """

    until: float = 0.0
    status: int = 503
    retry_after: int | None = None


class PaymentService:
    """The service: its ASGI ``app``, its `Outage` and what it captured.

    Args:
        clock: when outages end (the demo's clock).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.outage = Outage()
        self.captured: dict[str, dict[str, object]] = {}  # idempotency key -> answer
        self.charges = 0  # every POST /charge that reached the service
        self.app = Starlette(routes=[Route("/charge", self._charge, methods=["POST"])])

    def fail_for(
        self, seconds: float, *, status: int = 503, retry_after: int | None = None
    ) -> None:
        """Fail every charge for the next ``seconds`` with ``status``."""
        self.outage = Outage(self.clock.monotonic() + seconds, status, retry_after)

    def failing(self) -> bool:
        """Whether an outage is on now."""
        return self.clock.monotonic() < self.outage.until

    def remaining(self) -> float:
        """Seconds left of the outage (0 when none)."""
        return max(self.outage.until - self.clock.monotonic(), 0.0)

    async def _charge(self, request: Request) -> Response:
        self.charges += 1
        outage = self.outage
        if self.clock.monotonic() < outage.until:
            headers = {} if outage.retry_after is None else {"Retry-After": str(outage.retry_after)}
            return problem(outage.status, "the payment processor is unavailable", headers=headers)
        body = await request.body()
        try:
            document = json.loads(body) if len(body) <= _MAX_BODY else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        order_id, amount = document.get("order_id"), document.get("amount")
        if not valid_charge(order_id, amount):
            return problem(422, "order_id must be a positive int and amount a positive number")
        key = request.headers.get("idempotency-key") or f"order-{order_id}-{self.charges}"
        answer = self.captured.get(key)
        if answer is None:
            if len(self.captured) >= _MAX_KEYS:
                self.captured.pop(next(iter(self.captured)))
            answer = {
                "payment_id": f"pay_{len(self.captured) + 1:06d}",
                "order_id": order_id,
                "amount": amount,
                "status": "captured",
            }
            self.captured[key] = answer
        return JSONResponse(answer, status_code=201)


def valid_charge(order_id: object, amount: object) -> bool:
    """Whether ``order_id`` is a positive int and ``amount`` a positive finite number."""
    return (
        type(order_id) is int
        and 0 < order_id < 2**53
        and isinstance(amount, int | float)
        and not isinstance(amount, bool)
        and 0 < amount < 1e9
        and math.isfinite(amount)
    )
