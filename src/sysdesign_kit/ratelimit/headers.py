"""Response header fields for rate limits: IETF ``RateLimit-Policy`` / ``RateLimit``,
``Retry-After`` and the optional legacy ``X-RateLimit-*`` trio.

Syntax follows draft-ietf-httpapi-ratelimit-headers-11: both fields are Structured Field
Lists (RFC 9651) whose items are the policy names as sf-strings::

    RateLimit-Policy: "free";q=100;w=60, "ip";q=500;w=60
    RateLimit: "free";r=42;t=17, "ip";r=480;t=3

Every policy that applied to the request is listed in both fields (the draft allows
omitting all but the closest to exhaustion; listing all is what a client needs to see
which one to slow down for). ``q`` is the quota per window ``w`` (whole seconds);
``r`` the requests still available; ``t`` the effective window in whole seconds, rounded
up: time until the whole quota is back when allowed, and time until the request would be
allowed when denied, so ``Retry-After`` never points before the end of the effective window
(draft section 6).

Policy fields never change for one set of policies, so they are encoded once and cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.limiter import RateLimiter

__all__ = [
    "RateLimitHeaders",
    "policy_item",
    "retry_after_seconds",
    "sf_string",
]

Header = tuple[bytes, bytes]

_CACHE_LIMIT = 1024


def sf_string(text: str) -> str:
    """``text`` as a Structured Field String (RFC 9651 section 3.3.3), quotes included.

    Raises:
        ConfigurationError: ``text`` holds characters an sf-string cannot carry (anything
            but printable ASCII).
    """
    if not text.isascii() or not text.isprintable():
        raise ConfigurationError(
            f"policy name {text!r} cannot appear in a RateLimit header: use printable ASCII"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_item(limiter: RateLimiter) -> str:
    """One ``RateLimit-Policy`` item: ``"name";q=<quota>;w=<window seconds>``.

    The draft's ``w`` is whole seconds; a rate whose period is not (``"2/500ms"``) is
    restated over the nearest whole-second window (``q=4;w=1``).
    """
    rate = limiter.rate
    window = max(1, round(rate.period_us / 1_000_000))
    quota = rate.limit
    if rate.period_us != window * 1_000_000:
        quota = max(1, rate.limit * window * 1_000_000 // rate.period_us)
    return f"{sf_string(limiter.name)};q={quota};w={window}"


def _ceil_seconds(us: int) -> int:
    return -(-us // 1_000_000)


def retry_after_seconds(decisions: Iterable[RateLimitDecision]) -> int:
    """Whole seconds for ``Retry-After``: the longest wait among blocking decisions,
    rounded up, and at least 1 (``Retry-After: 0`` would invite an instant retry)."""
    longest = 0
    for decision in decisions:
        if decision.blocked and decision.retry_us > longest:
            longest = decision.retry_us
    return max(1, _ceil_seconds(longest))


class RateLimitHeaders:
    """Renders the rate-limit header fields for decisions of a known set of limiters.

    Args:
        limiters: the limiters whose decisions will be rendered; their names are checked
            and their items encoded here, once. Others are encoded on first use.
        legacy: also send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds
            until the quota is back) for the policy closest to exhaustion.

    Raises:
        ConfigurationError: a policy name that is not printable ASCII.
    """

    __slots__ = ("_items", "_legacy", "_names", "_sets")

    def __init__(self, limiters: Iterable[RateLimiter] = (), *, legacy: bool = False) -> None:
        self._legacy = legacy
        self._items: dict[RateLimiter, str] = {}
        self._names: dict[RateLimiter, str] = {}
        # Per set of policies: its RateLimit-Policy value and a RateLimit template taking
        # (r, t) per policy, so a request only fills in numbers.
        self._sets: dict[tuple[RateLimiter, ...], tuple[bytes, bytes]] = {}
        for limiter in limiters:
            self._encode(limiter)

    def _encode(self, limiter: RateLimiter) -> None:
        self._items[limiter] = policy_item(limiter)
        self._names[limiter] = sf_string(limiter.name).replace("%", "%%") + ";r=%d;t=%d"

    def _set(self, key: tuple[RateLimiter, ...]) -> tuple[bytes, bytes]:
        entry = self._sets.get(key)
        if entry is None:
            for limiter in key:
                if limiter not in self._items:
                    self._encode(limiter)
            entry = (
                ", ".join([self._items[limiter] for limiter in key]).encode("ascii"),
                ", ".join([self._names[limiter] for limiter in key]).encode("ascii"),
            )
            if len(self._sets) < _CACHE_LIMIT:
                self._sets[key] = entry
        return entry

    def policy_value(self, limiters: Sequence[RateLimiter]) -> bytes:
        """The ``RateLimit-Policy`` value for this set of policies (cached)."""
        return self._set(tuple(limiters))[0]

    def ratelimit_value(self, decisions: Sequence[RateLimitDecision]) -> bytes:
        """The ``RateLimit`` value: one service-limit item per decision."""
        return self.render(decisions)[1][1]

    def render(
        self, decisions: Sequence[RateLimitDecision], *, retry_after: bool = False
    ) -> list[Header]:
        """All header fields for ``decisions`` as ASGI ``(name, value)`` byte pairs.

        Args:
            decisions: what each applicable limiter decided for this request.
            retry_after: add ``Retry-After`` (set on a denial).
        """
        # The decisions' limiters, and their r and t in order for the set's template;
        # written out here, with the cached set looked up in line: every limited response
        # comes through.
        limiters: list[RateLimiter] = []
        numbers: list[int] = []
        for allowed, remaining, reset_us, retry_us, limiter, _ in decisions:
            limiters.append(limiter)
            numbers += (remaining, -(-(reset_us if allowed else retry_us) // 1_000_000))
        key = tuple(limiters)
        policy, template = self._sets.get(key) or self._set(key)
        headers: list[Header] = [
            (b"ratelimit-policy", policy),
            (b"ratelimit", template % tuple(numbers)),
        ]
        if retry_after:
            headers.append((b"retry-after", str(retry_after_seconds(decisions)).encode()))
        if self._legacy and decisions:
            closest = _closest(decisions)
            headers += [
                (b"x-ratelimit-limit", str(closest.limit).encode()),
                (b"x-ratelimit-remaining", str(closest.remaining).encode()),
                (b"x-ratelimit-reset", str(_ceil_seconds(closest.reset_us)).encode()),
            ]
        return headers

    def as_dict(
        self, decisions: Sequence[RateLimitDecision], *, retry_after: bool = False
    ) -> dict[str, str]:
        """`render` as a ``{name: value}`` dict of text, for frameworks that want one."""
        return {
            name.decode("ascii"): value.decode("ascii")
            for name, value in self.render(decisions, retry_after=retry_after)
        }


def _closest(decisions: Sequence[RateLimitDecision]) -> RateLimitDecision:
    """The decision the legacy trio describes: the blocking one with the longest wait, else
    the one with the fewest remaining requests."""
    blocked = [d for d in decisions if d.blocked]
    if blocked:
        return max(blocked, key=lambda d: d.retry_us)
    return min(decisions, key=lambda d: d.remaining)
