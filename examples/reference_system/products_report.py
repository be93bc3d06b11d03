"""What the product-cache scenario saw: per step, the answers, the cache's lookups and the
database's queries.

`ProductStep` is filled by the scenario from differences of the counters the product
service keeps (`ProductStats`, fed by the cache's own events, and the database's query
counts), so the report shows what the cache did, not what its settings say it should do.
`format_products` prints the steps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from reference_system.products import PRODUCT_CACHE, ProductService

__all__ = ["ProductStep", "StepMeter", "format_products"]

_LOOKUPS = ("hit", "miss", "coalesced", "stale")


@dataclass(slots=True)
class ProductStep:
    """One step of the scenario: what was done, the answers, the lookups and the queries."""

    title: str
    statuses: Counter[int] = field(default_factory=Counter)
    lookups: Counter[str] = field(default_factory=Counter)
    queries: int = 0  # database queries started during the step
    failed: int = 0  # of which failed (the database was down)

    def hit_ratio(self) -> float:
        """Hits over the step's lookups (0 without any)."""
        total = sum(self.lookups.values())
        return self.lookups["hit"] / total if total else 0.0


class StepMeter:
    """Measures one step: the service's counters before it, subtracted after it."""

    def __init__(self, service: ProductService, title: str) -> None:
        self.service = service
        self.step = ProductStep(title)
        self._lookups = Counter(service.stats.lookups)
        self._queries = service.db.queries
        self._failed = service.db.failed

    def done(self) -> ProductStep:
        """The step, with the counts since the meter was made."""
        step, service = self.step, self.service
        step.lookups = service.stats.lookups - self._lookups
        step.queries = service.db.queries - self._queries
        step.failed = service.db.failed - self._failed
        return step


def _policy() -> str:
    return (
        f"ttl {PRODUCT_CACHE.ttl:g} s, stale-while-revalidate "
        f"{PRODUCT_CACHE.stale_while_revalidate:g} s, stale-if-error "
        f"{PRODUCT_CACHE.stale_if_error:g} s, not-found {PRODUCT_CACHE.negative_ttl:g} s"
    )


def format_products(steps: list[ProductStep], service: ProductService) -> list[str]:
    """The product-cache section of the demo's report."""
    total = ProductStep("all steps")
    for step in steps:
        total.statuses += step.statuses
        total.lookups += step.lookups
        total.queries += step.queries
        total.failed += step.failed
    rows = [*steps, total]
    answers = [
        ", ".join(f"{status} x{count}" for status, count in sorted(step.statuses.items()))
        for step in rows
    ]
    width = max(len(step.title) for step in rows)
    wide = max(len("answers"), *(len(text) for text in answers))
    lines = [
        "",
        "product cache: GET /api/v1/products/{id} reads through Cache('products') in front of "
        "the product DB",
        f"  ({_policy()}; DB query {service.db.latency * 1000:g} ms, simulated clock)",
        f"  {'step':<{width}}  {'answers':<{wide}} {'hit':>5} {'miss':>5} {'coalesced':>9} "
        f"{'stale':>5} {'DB queries':>10} {'failed':>6} {'hit ratio':>9}",
    ]
    for step, text in zip(rows, answers, strict=True):
        hit, miss, coalesced, stale = (step.lookups[outcome] for outcome in _LOOKUPS)
        lines.append(
            f"  {step.title:<{width}}  {text:<{wide}} {hit:>5} {miss:>5} {coalesced:>9} "
            f"{stale:>5} {step.queries:>10} {step.failed:>6} {step.hit_ratio():>9.1%}"
        )
    lines += [
        "  stale = the last good copy, answered because the DB failed (stale-if-error); each "
        "such read tried the DB first (a miss and a failed query)",
        "  coalesced = waited for the one query another read of the same product had started",
    ]
    return lines
