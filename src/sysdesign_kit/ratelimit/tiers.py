"""Which limits apply to a request, and under which keys.

Two forms, both answering ``resolve(scope) -> [(limiter, key), ...]`` for the middleware:

- `TieredLimits` (built by `tiered_limits`): the seed's plans. The request's tier is the
  authenticated `Principal`'s tier, ``"anonymous"`` without one; the tier limit is keyed by
  the principal's subject (the client address for anonymous callers) and a per-IP limit
  applies on top to everyone, so many accounts behind one address still share its 500/min.
- `RuleSet` of `LimitRule`: your own rules, each a limiter, a key function and an optional
  condition.

All limiters of one set share one backend object so a request is checked against all of
them in a single all-or-nothing `hit_all` (one round trip on Redis).

Unknown tiers: a principal whose tier is not configured is limited as the lowest
authenticated tier (``fallback_tier``, ``"free"`` by default), never a higher one, so a typo
in an auth layer cannot grant premium quotas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError, InvalidInput, InvalidKey
from sysdesign_kit.events import Listener
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal, get_principal
from sysdesign_kit.ratelimit.backend import AlgorithmName, LimiterBackend, backend_from_url
from sysdesign_kit.ratelimit.keys import ClientIP, KeyFunc, safe_key
from sysdesign_kit.ratelimit.limiter import MAX_KEY_LENGTH, RateLimiter
from sysdesign_kit.ratelimit.memory import MemoryBackend

__all__ = ["LimitRule", "LimitSource", "RuleSet", "TieredLimits", "tiered_limits"]

Scope = MutableMapping[str, Any]
Pairs = list[tuple[RateLimiter, str]]

# Entries kept by each per-request cache of `TieredLimits` before it starts over.
_CACHE_LIMIT = 4096


class LimitSource(Protocol):
    """What the middleware needs from a set of limits."""

    @property
    def limiters(self) -> tuple[RateLimiter, ...]:
        """Every limiter that may apply, in header order."""
        ...

    def policy_sets(self) -> list[tuple[RateLimiter, ...]]:
        """The combinations of limiters requests usually get (pre-encoded headers)."""
        ...

    def resolve(self, scope: Scope) -> Pairs:
        """The (limiter, key) pairs that apply to this request, possibly none."""
        ...


def _shared_backend(limiters: Iterable[RateLimiter]) -> LimiterBackend:
    backends = {id(limiter.backend): limiter.backend for limiter in limiters}
    if not backends:
        raise ConfigurationError("at least one limiter is needed")
    if len(backends) > 1:
        raise ConfigurationError(
            "all limiters of one set must share one backend object, so a request is checked "
            "against all of them at once (pass backend= the same object or URL string once)"
        )
    return next(iter(backends.values()))


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One limit of a `RuleSet`.

    Attributes:
        limiter: the policy to check.
        key: the key function (see `sysdesign_kit.ratelimit.keys`); a ``None`` key skips
            the rule for that request. Keys that are too long or not ASCII are replaced by
            a digest.
        when: optional condition; the rule applies only when it returns True.
    """

    limiter: RateLimiter
    key: KeyFunc
    when: Callable[[Scope], bool] | None = None


class RuleSet:
    """Your own rules, checked together.

    Args:
        rules: the rules, in the order their policies appear in the headers.

    Raises:
        ConfigurationError: no rules, or limiters on different backend objects.
    """

    __slots__ = ("_limiters", "backend", "rules")

    def __init__(self, rules: Iterable[LimitRule]) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, LimitRule):
                raise ConfigurationError(f"expected LimitRule, got {type(rule).__name__}")
        self._limiters = tuple(dict.fromkeys(rule.limiter for rule in self.rules))
        self.backend = _shared_backend(self._limiters)

    @property
    def limiters(self) -> tuple[RateLimiter, ...]:
        """Every limiter of the rules, in order, once each."""
        return self._limiters

    def policy_sets(self) -> list[tuple[RateLimiter, ...]]:
        """All rules applying is the usual case."""
        return [tuple(rule.limiter for rule in self.rules)]

    def resolve(self, scope: Scope) -> Pairs:
        """The (limiter, key) pairs of the rules that apply to ``scope``.

        Raises:
            InvalidKey: a key function returned something that is not a string.
        """
        pairs: Pairs = []
        for rule in self.rules:
            if rule.when is not None and not rule.when(scope):
                continue
            key = rule.key(scope)
            if key is None:
                continue
            pairs.append((rule.limiter, _clean(key)))
        return pairs


def _clean(key: object) -> str:
    if type(key) is not str:
        raise InvalidKey(f"a key function must return str or None, got {type(key).__name__}")
    if 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
        return key
    return safe_key("", key)


class TieredLimits:
    """Plan-based limits: one limiter per tier plus an optional per-IP limit on top.

    Args:
        tiers: limiter per tier name; must include ``anonymous_tier`` and ``fallback_tier``.
        per_ip: a limit every request is also charged against, keyed by client address.
        client_ip: how the client address is found (trusted proxies); default: the peer.
        anonymous_tier: the tier of requests without a principal.
        fallback_tier: the tier of principals whose tier is not in ``tiers``.

    Raises:
        ConfigurationError: a missing tier or limiters on different backend objects.

    What a request resolves to is remembered: per principal object (an authenticator that
    caches its principals hands the same object to every request of one caller) and per
    client address, so set the tiers and options here, not on the object afterwards.
    """

    __slots__ = (
        "_addresses",
        "_limiters",
        "_peer_only",
        "_subjects",
        "anonymous_tier",
        "backend",
        "client_ip",
        "fallback_tier",
        "per_ip",
        "tiers",
    )

    def __init__(
        self,
        *,
        tiers: Mapping[str, RateLimiter],
        per_ip: RateLimiter | None = None,
        client_ip: ClientIP | None = None,
        anonymous_tier: str = "anonymous",
        fallback_tier: str = "free",
    ) -> None:
        for name in (anonymous_tier, fallback_tier):
            if name not in tiers:
                raise ConfigurationError(f"tiers must include {name!r}, got {sorted(tiers)}")
        self.tiers: Mapping[str, RateLimiter] = MappingProxyType(dict(tiers))
        self.per_ip = per_ip
        self.client_ip = client_ip if client_ip is not None else ClientIP()
        self.anonymous_tier = anonymous_tier
        self.fallback_tier = fallback_tier
        extra = (per_ip,) if per_ip is not None else ()
        self._limiters = tuple(dict.fromkeys((*self.tiers.values(), *extra)))
        self.backend = _shared_backend(self._limiters)
        # id(principal) -> (principal, (tier limiter, key)); the principal is held so its
        # id cannot be reused by another object while the entry lives.
        self._subjects: dict[int, tuple[Principal, tuple[RateLimiter, str]]] = {}
        # peer address -> its key, when forwarding headers are never believed.
        self._addresses: dict[str, str] = {}
        self._peer_only = self.client_ip.peer_only

    @property
    def limiters(self) -> tuple[RateLimiter, ...]:
        """The tier limiters, then the per-IP limiter."""
        return self._limiters

    def policy_sets(self) -> list[tuple[RateLimiter, ...]]:
        """One set per tier: the tier's limiter and the per-IP limiter."""
        extra = (self.per_ip,) if self.per_ip is not None else ()
        return [(limiter, *extra) for limiter in self.tiers.values()]

    def tier_of(self, scope: Scope) -> str:
        """The tier name the request is limited as."""
        principal = get_principal(scope)
        if principal is None:
            return self.anonymous_tier
        return principal.tier if principal.tier in self.tiers else self.fallback_tier

    def resolve(self, scope: Scope) -> Pairs:
        """``[(tier limiter, subject or address), (per-IP limiter, address)]``."""
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        address: str | None = None
        if principal is None or not isinstance(principal, Principal):
            address = self._address(scope)
            pairs = [(self.tiers[self.anonymous_tier], address)]
        else:
            known = self._subjects.get(id(principal))
            if known is None or known[0] is not principal:
                known = self._learn(principal)
            pairs = [known[1]]
        if self.per_ip is not None:
            pairs.append((self.per_ip, address or self._address(scope)))
        return pairs

    def _learn(self, principal: Principal) -> tuple[Principal, tuple[RateLimiter, str]]:
        tier = self.tiers.get(principal.tier) or self.tiers[self.fallback_tier]
        known = (principal, (tier, safe_key("sub:", principal.subject)))
        if len(self._subjects) >= _CACHE_LIMIT:
            self._subjects.clear()
        self._subjects[id(principal)] = known
        return known

    async def over_ip_limit(self, scope: Scope) -> bool:
        """The request's client has spent its per-IP limit: a request now would be refused
        whoever sends it (nothing is charged). False without a per-IP limit, for a request
        whose address gives no key, and when the backend cannot answer."""
        if self.per_ip is None:
            return False
        try:
            key = self._address(scope)
        except InvalidInput:
            return False
        return (await self.per_ip.peek(key)).blocked

    def _address(self, scope: Scope) -> str:
        """The client address's key, ``"ip:<address>"``."""
        if self._peer_only:
            client = scope.get("client")
            host = client[0] if client else None
            if type(host) is str:
                key = self._addresses.get(host)
                if key is None:
                    key = safe_key("ip:", host)
                    if len(self._addresses) >= _CACHE_LIMIT:
                        self._addresses.clear()
                    self._addresses[host] = key
                return key
        return safe_key("ip:", self.client_ip(scope))


def tiered_limits(
    *,
    backend: LimiterBackend | str | None = None,
    anonymous: str = "20/minute",
    free: str = "100/minute",
    premium: str = "1000/minute",
    per_ip: str = "500/minute",
    algorithm: AlgorithmName = "token_bucket",
    clock: Clock = SYSTEM_CLOCK,
    listeners: Iterable[Listener] = (),
    trusted_proxies: Sequence[str] = (),
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
) -> TieredLimits:
    """The seed's tiers: anonymous 20/min, free 100/min, premium 1000/min, 500/min per IP.

    The policies are named ``"anonymous"``, ``"free"``, ``"premium"`` and ``"ip"`` (header
    and event names). All four share one backend object.

    Args:
        backend: a backend object, a URL (``"redis://..."``) or None for memory.
        anonymous, free, premium, per_ip: the rates (``"100/minute"``-style).
        algorithm: for all four limiters.
        clock: time source (of the memory backend, and for waiting).
        listeners: receive every limiter's events.
        trusted_proxies: addresses/CIDRs of proxies whose forwarding header is believed.
        forwarded_header: the header those proxies set (``"x-forwarded-for"`` or
            ``"forwarded"``).

    Raises:
        ConfigurationError: a bad rate, algorithm, backend URL or proxy address.
    """
    if backend is None:
        backend = MemoryBackend(clock=clock)
    elif isinstance(backend, str):
        backend = backend_from_url(backend)
    shared: LimiterBackend = backend
    listeners = tuple(listeners)

    def make(name: str, rate: str) -> RateLimiter:
        return RateLimiter(
            rate,
            algorithm=algorithm,
            name=name,
            backend=shared,
            clock=clock,
            listeners=listeners,
        )

    return TieredLimits(
        tiers={
            "anonymous": make("anonymous", anonymous),
            "free": make("free", free),
            "premium": make("premium", premium),
        },
        per_ip=make("ip", per_ip),
        client_ip=ClientIP(trusted_proxies, header=forwarded_header),
    )
