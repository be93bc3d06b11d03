"""What the demo saw, counted per scenario and printed as a small table.

Only observed responses are counted: status codes, ``Retry-After`` values and the policy a
429 names. Nothing here knows what the limits are supposed to do, so the table cannot claim
more than happened.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import httpx

__all__ = ["Tally", "format_report"]


@dataclass(slots=True)
class Tally:
    """Responses of one scenario.

    Attributes:
        title: what the scenario does, in a few words.
        client: the address the requests came from.
        statuses: status code -> how many responses had it.
        retry_after: every ``Retry-After`` value (seconds) seen on a 429.
        denied_by: policy name -> how many 429s named it as violated (from the problem body).
    """

    title: str
    client: str = ""
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: list[int] = field(default_factory=list)
    denied_by: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        """How many requests were sent."""
        return sum(self.statuses.values())

    @property
    def limited(self) -> int:
        """How many were answered 429 Too Many Requests."""
        return self.statuses[429]

    @property
    def allowed(self) -> int:
        """How many got past the rate limiter (any answer but 429)."""
        return self.requests - self.limited

    def record(self, response: httpx.Response) -> None:
        """Count one response."""
        self.statuses[response.status_code] += 1
        if response.status_code != 429:
            return
        value = response.headers.get("retry-after", "")
        if value.isdigit():
            self.retry_after.append(int(value))
        self.denied_by.update(_violated(response))


def _violated(response: httpx.Response) -> list[str]:
    """The policies a 429's problem body names as violated."""
    try:
        body = response.json()
    except ValueError:
        return []
    policies = body.get("violated-policies") if isinstance(body, dict) else None
    if not isinstance(policies, list):
        return []
    return [policy for policy in policies if isinstance(policy, str)]


def _seconds(values: list[int]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low} s" if low == high else f"{low}-{high} s"


def _statuses(statuses: Counter[int]) -> str:
    return "status " + ", ".join(f"{code} x{count}" for code, count in sorted(statuses.items()))


def _row(number: str, title: str, width: int, tally: Tally) -> str:
    return (
        f"  {number:>2}  {title:<{width}}{tally.requests:>8}  {tally.allowed:>7}"
        f"  {tally.limited:>5}  {_seconds(tally.retry_after)}"
    )


def format_report(header: list[str], tallies: list[Tally]) -> str:
    """The demo's report: ``header`` lines, one row per tally, a total, then per scenario
    the status codes seen and the policies the 429s named."""
    width = max(len(t.title) for t in tallies) + 2
    lines = [*header, ""]
    lines.append(
        f"  {'#':>2}  {'scenario':<{width}}{'requests':>8}  {'allowed':>7}  {'429s':>5}"
        "  Retry-After"
    )
    total = Tally("total")
    for number, tally in enumerate(tallies, 1):
        lines.append(_row(str(number), tally.title, width, tally))
        total.statuses.update(tally.statuses)
        total.retry_after.extend(tally.retry_after)
    lines += [_row("", "total", width, total), ""]
    for number, tally in enumerate(tallies, 1):
        note = f"  {number:>2}  from {tally.client}: {_statuses(tally.statuses)}"
        if tally.denied_by:
            note += "; 429s by policy: " + ", ".join(
                f"{policy} x{count}" for policy, count in sorted(tally.denied_by.items())
            )
        lines.append(note)
    return "\n".join(lines)
