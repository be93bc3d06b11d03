"""The order service: ``POST /api/v1/orders`` places an order, ``GET /api/v1/orders/{id}``
reads one back.

In the seed the order service sits behind the gateway like the product service; here it is
a few in-process routes over an in-memory store, deterministic (ids count up from 1, times
come from the app's clock), so the demo's report is the same on every run.

The gateway does the checking before a handler runs: RBAC wants scope ``write`` to place an
order and ``read`` to see one; `ValidationMiddleware` decodes the body into `NewOrder` (or
answers 415/413/400, or 422 naming the failing field, such as ``$.items[0].quantity``). The
handler then prices each item through the product service's cache (an unknown product is a
422) and stores the order under the caller's subject. An order is visible to the one who
placed it and to the ``admin`` role; to anyone else it does not exist (404, not 403: order
ids count up and would otherwise tell who ordered what).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.problems import problem
from reference_system.product_db import DatabaseUnavailable
from reference_system.products import ProductService
from sysdesign_kit.clock import Clock
from sysdesign_kit.gateway.validation import Schema, validated_body
from sysdesign_kit.principal import Principal, get_principal

__all__ = ["MAX_ORDERS", "SCHEMAS", "NewOrder", "Order", "OrderItem", "OrderLine", "OrderService"]

#: Orders kept in memory; the oldest go first (a served demo runs for as long as one likes).
MAX_ORDERS = 10_000
_MAX_ITEMS = 20
_ID_DIGITS = 18


class OrderItem(msgspec.Struct, forbid_unknown_fields=True):
    """One line of a new order: which product, how many."""

    product_id: Annotated[int, msgspec.Meta(ge=1)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class NewOrder(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/orders``: ``{"items": [{"product_id": 1, "quantity": 2}]}``."""

    items: Annotated[list[OrderItem], msgspec.Meta(min_length=1, max_length=_MAX_ITEMS)]


#: What the gateway's `ValidationMiddleware` checks for this service.
SCHEMAS = (Schema("POST /api/v1/orders", body=NewOrder),)


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A priced line of a placed order."""

    product_id: int
    name: str
    quantity: int
    unit_price: float


@dataclass(frozen=True, slots=True)
class Order:
    """A placed order, as the API returns it."""

    id: int
    customer: str
    items: tuple[OrderLine, ...]
    total: float
    currency: str
    status: str
    created_at: float


class OrderService:
    """The order routes and their in-memory store.

    Args:
        products: prices the items (reads through its cache).
        clock: stamps ``created_at`` (the app's clock).
        max_orders: how many orders are kept.
    """

    def __init__(
        self, products: ProductService, *, clock: Clock, max_orders: int = MAX_ORDERS
    ) -> None:
        self.products = products
        self.clock = clock
        self.max_orders = max_orders
        self.orders: dict[int, Order] = {}
        #: Orders placed per customer (subject), and the principal each last used.
        self.placed: Counter[str] = Counter()
        self.customers: dict[str, Principal] = {}
        self._next_id = 1
        self.routes = [
            Route("/api/v1/orders", self.create_order, methods=["POST"]),
            Route("/api/v1/orders/{order_id}", self.get_order, methods=["GET"]),
        ]

    async def create_order(self, request: Request) -> Response:
        """Place an order for the caller: 201 with the order and its ``Location``; 401
        without a principal, 422 for a body that does not fit or an unknown product, 503 if
        a product cannot be read."""
        principal = get_principal(request.scope)
        if principal is None:
            return problem(401, "placing an order needs a token with the write scope")
        new = validated_body(request.scope)
        if not isinstance(new, NewOrder):  # an app run without the gateway's validation
            try:
                new = msgspec.json.decode(await request.body(), type=NewOrder)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return problem(422, f"the order does not match the schema: {str(exc)[:200]}")
        lines = []
        for item in new.items:
            try:
                product = await self.products.lookup(item.product_id)
            except DatabaseUnavailable:
                return problem(503, "the product database is unavailable; no order was placed")
            if product is None:
                return problem(422, f"no product with id {item.product_id}")
            lines.append(OrderLine(product.id, product.name, item.quantity, product.price))
        total = round(sum(line.unit_price * line.quantity for line in lines), 2)
        order = Order(
            id=self._next_id,
            customer=principal.subject,
            items=tuple(lines),
            total=total,
            currency="EUR",
            status="created",
            created_at=self.clock.time(),
        )
        self._next_id += 1
        self.orders[order.id] = order
        if len(self.orders) > self.max_orders:
            del self.orders[next(iter(self.orders))]  # dicts keep insertion order: the oldest
        self.placed[principal.subject] += 1
        self.customers[principal.subject] = principal
        return JSONResponse(
            asdict(order), status_code=201, headers={"Location": f"/api/v1/orders/{order.id}"}
        )

    async def get_order(self, request: Request) -> Response:
        """One order: the caller's own, or any for the ``admin`` role; else 404."""
        principal = get_principal(request.scope)
        if principal is None:
            return problem(401, "reading an order needs a token with the read scope")
        raw: str = request.path_params["order_id"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= _ID_DIGITS):
            return problem(422, f"order id must be a positive integer, got {raw[:40]!r}")
        order = self.orders.get(int(raw))
        if order is None or (
            order.customer != principal.subject and "admin" not in principal.roles
        ):
            return problem(404, f"no order with id {int(raw)}")
        return JSONResponse(asdict(order))
