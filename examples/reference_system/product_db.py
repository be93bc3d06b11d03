"""The product database, simulated: a catalog behind an async query that takes time and can fail.

The seed puts a database behind the product service; the cache in front of it (see
``products``) is what this module exists to show, so the database only has to behave like
one where it matters to a cache:

- a query takes ``latency`` seconds on the given clock (a `VirtualClock` in the scripted
  demo, so a 50 ms query costs no real time, the real clock when serving);
- every query is counted (``queries``, and ``failed`` among them), which is how the demo
  shows that 200 concurrent readers of a cold product made one query;
- ``down`` is the operators' switch (``POST /admin/products/db-outage``): while it is on,
  every query fails with `DatabaseUnavailable` at once, as a refused connection would;
- `delete` removes a row (``DELETE /api/v1/products/{id}``, admins only), from this
  database's own copy of the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sysdesign_kit.clock import Clock

__all__ = ["CATALOG", "DatabaseUnavailable", "Product", "ProductDB"]

# A query's latency passes in steps of at most this: on a VirtualClock, where one sleep moves
# time at once, other requests keep arriving while a query runs, as they do on a real clock.
_TICK = 0.001
# Float steps may leave a sliver of time; less than this is none.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog entry, as the API returns it."""

    id: int
    name: str
    price: float
    currency: str = "EUR"


def _catalog() -> Mapping[int, Product]:
    named = (
        Product(1, "Mechanical keyboard", 89.99),
        Product(2, "Wireless mouse", 29.50),
        Product(3, "27-inch monitor", 249.00),
        Product(4, "USB-C dock", 119.00),
        Product(5, "Noise-cancelling headphones", 199.99),
        Product(123, "Product", 99.99),  # the seed's example response
    )
    # A shop's long tail, so that the demo's traffic has more products than a handful.
    tail = (Product(i, f"Accessory {i}", round(4.99 + i * 1.25, 2)) for i in range(6, 101))
    return MappingProxyType({p.id: p for p in (*named, *tail)})


#: What the database holds: ids 1..100 and 123.
CATALOG: Mapping[int, Product] = _catalog()


class DatabaseUnavailable(Exception):
    """The product database could not answer (it is down)."""


class ProductDB:
    """The simulated product database.

    Args:
        clock: the clock queries take their time on.
        latency: seconds each query takes (0: answers at once, needing no clock at all,
            which is what tests on a `ManualClock` want).
        catalog: the rows, by id (copied: deleting a row leaves the given mapping alone).
    """

    def __init__(
        self, clock: Clock, *, latency: float = 0.0, catalog: Mapping[int, Product] = CATALOG
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.catalog: dict[int, Product] = dict(catalog)
        self.down = False
        self.queries = 0  # every query started, failed ones included
        self.failed = 0  # queries that failed because the database was down

    async def get(self, product_id: int) -> Product | None:
        """``SELECT ... WHERE id = product_id``: the product, or None if there is none.

        Raises:
            DatabaseUnavailable: the database is down.
        """
        await self._query()
        return self.catalog.get(product_id)

    async def delete(self, product_id: int) -> bool:
        """``DELETE ... WHERE id = product_id``: whether there was such a row.

        Raises:
            DatabaseUnavailable: the database is down.
        """
        await self._query()
        return self.catalog.pop(product_id, None) is not None

    async def _query(self) -> None:
        """One query's cost: counted, refused while the database is down, slowed by
        ``latency``."""
        self.queries += 1
        if self.down:
            self.failed += 1
            raise DatabaseUnavailable("the product database is not accepting connections")
        if self.latency > 0:
            await self._take(self.latency)

    async def _take(self, seconds: float) -> None:
        clock = self.clock
        deadline = clock.monotonic() + seconds
        while (left := deadline - clock.monotonic()) > _EPSILON:
            await clock.sleep(min(left, _TICK))
