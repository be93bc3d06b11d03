"""The product service: ``GET /api/v1/products/{id}`` over a small in-process catalog.

The seed puts a database and a cache-aside Redis behind this service; later issues add them.
For now the catalog is a frozen in-memory table so the demo needs nothing installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.problems import problem

__all__ = ["CATALOG", "Product", "get_product", "routes"]

# ASCII digits only (str.isdigit would accept "١٢٣"), and few enough that int() stays cheap.
_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog entry, as the API returns it."""

    id: int
    name: str
    price: float
    currency: str = "EUR"


CATALOG: Mapping[int, Product] = MappingProxyType(
    {
        p.id: p
        for p in (
            Product(1, "Mechanical keyboard", 89.99),
            Product(2, "Wireless mouse", 29.50),
            Product(3, "27-inch monitor", 249.00),
            Product(4, "USB-C dock", 119.00),
            Product(5, "Noise-cancelling headphones", 199.99),
            Product(123, "Product", 99.99),  # the seed's example response
        )
    }
)


async def get_product(request: Request) -> Response:
    """Answer one product as JSON; 422 for an id that is not a positive integer, 404 if unknown."""
    raw = request.path_params["product_id"]
    if not _ID.fullmatch(raw) or int(raw) == 0:
        return problem(422, f"product id must be a positive integer, got {raw[:40]!r}")
    product = CATALOG.get(int(raw))
    if product is None:
        return problem(404, f"no product with id {int(raw)}")
    # API responses may be cached briefly by clients and CDNs (the seed's max-age=300).
    return JSONResponse(asdict(product), headers={"Cache-Control": "max-age=300"})


routes = [Route("/api/v1/products/{product_id}", get_product, methods=["GET"])]
