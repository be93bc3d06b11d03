from __future__ import annotations

from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError, InvalidKey
from sysdesign_kit.principal import Principal, set_principal
from sysdesign_kit.ratelimit import (
    ClientIP,
    LimitRule,
    MemoryBackend,
    RateLimiter,
    RuleSet,
    TieredLimits,
    by_api_key,
    by_ip,
    hit_all,
    tiered_limits,
)


def scope_of(peer: str = "203.0.113.9", principal: Principal | None = None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "path": "/", "headers": [], "client": (peer, 1)}
    if principal is not None:
        set_principal(scope, principal)
    return scope


@pytest.mark.parametrize(
    ("principal", "tier", "tier_key"),
    [
        (None, "anonymous", "ip:203.0.113.9"),
        (Principal("u1", tier="free"), "free", "sub:u1"),
        (Principal("u2", tier="premium"), "premium", "sub:u2"),
        (Principal("u3", tier="platinum"), "free", "sub:u3"),  # unknown: lowest authenticated
        (Principal("u4", tier="anonymous"), "anonymous", "sub:u4"),
    ],
)
def test_resolve_tier_and_keys(principal: Principal | None, tier: str, tier_key: str) -> None:
    limits = tiered_limits(clock=ManualClock())
    scope = scope_of(principal=principal)
    assert limits.tier_of(scope) == tier
    pairs = limits.resolve(scope)
    assert [(limiter.name, key) for limiter, key in pairs] == [
        (tier, tier_key),
        ("ip", "ip:203.0.113.9"),
    ]


def test_defaults_are_the_seed_numbers_on_one_backend() -> None:
    limits = tiered_limits(clock=ManualClock())
    rates = {limiter.name: (limiter.rate.limit, limiter.window) for limiter in limits.limiters}
    assert rates == {
        "anonymous": (20, 60.0),
        "free": (100, 60.0),
        "premium": (1000, 60.0),
        "ip": (500, 60.0),
    }
    assert len({id(limiter.backend) for limiter in limits.limiters}) == 1
    assert limits.backend is limits.per_ip.backend  # type: ignore[union-attr]
    assert [[lim.name for lim in s] for s in limits.policy_sets()] == [
        ["anonymous", "ip"],
        ["free", "ip"],
        ["premium", "ip"],
    ]


def test_options_reach_every_limiter() -> None:
    events: list[object] = []
    backend = MemoryBackend(clock=ManualClock())
    limits = tiered_limits(
        backend=backend,
        free="5/second",
        algorithm="sliding_window",
        listeners=[events.append],
        trusted_proxies=["10.0.0.0/8"],
    )
    assert all(lim.backend is backend for lim in limits.limiters)
    assert {lim.algorithm for lim in limits.limiters} == {"sliding_window"}
    assert limits.tiers["free"].rate.limit == 5
    scope = scope_of("10.0.0.1")
    scope["headers"] = [(b"x-forwarded-for", b"198.51.100.4")]
    assert limits.resolve(scope)[0][1] == "ip:198.51.100.4"


async def test_backend_by_url_and_one_round_trip() -> None:
    limits = tiered_limits(backend="memory://")
    decisions = await hit_all(limits.resolve(scope_of()))
    assert [d.remaining for d in decisions] == [19, 499]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anonymous": "20/fortnight"}, "fortnight"),
        ({"algorithm": "leaky"}, "algorithm"),
        ({"backend": "nope://x"}, "scheme"),
        ({"trusted_proxies": ["10.0.0.0/99"]}, "trusted_proxies"),
    ],
)
def test_tiered_limits_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        tiered_limits(**kwargs)


def test_tiered_limits_validation() -> None:
    clock = ManualClock()
    a = RateLimiter("1/s", name="anonymous", clock=clock)
    with pytest.raises(ConfigurationError, match="'free'"):
        TieredLimits(tiers={"anonymous": a})
    b = RateLimiter("1/s", name="free", clock=clock)  # its own backend
    with pytest.raises(ConfigurationError, match="share one backend"):
        TieredLimits(tiers={"anonymous": a, "free": b})
    solo = TieredLimits(tiers={"anonymous": a, "free": a}, client_ip=ClientIP())
    assert solo.resolve(scope_of()) == [(a, "ip:203.0.113.9")]


def test_rule_set_conditions_and_skips() -> None:
    backend = MemoryBackend(clock=ManualClock())
    per_ip = RateLimiter("10/s", name="ip", backend=backend)
    per_key = RateLimiter("5/s", name="key", backend=backend)
    writes = RateLimiter("1/s", name="writes", backend=backend)
    rules = RuleSet(
        [
            LimitRule(per_ip, by_ip()),
            LimitRule(per_key, by_api_key()),  # skipped without the header
            LimitRule(writes, lambda s: "w", when=lambda s: s.get("method") == "POST"),
        ]
    )
    assert rules.limiters == (per_ip, per_key, writes)
    assert rules.policy_sets() == [(per_ip, per_key, writes)]
    scope = scope_of()
    assert [lim.name for lim, _ in rules.resolve(scope)] == ["ip"]
    scope.update(method="POST", headers=[(b"x-api-key", b"k")])
    assert [lim.name for lim, _ in rules.resolve(scope)] == ["ip", "key", "writes"]


def test_rule_set_cleans_keys_and_rejects_non_strings() -> None:
    lim = RateLimiter("1/s", clock=ManualClock())
    long_key = RuleSet([LimitRule(lim, lambda s: "\u00e9" * 5000)]).resolve(scope_of())
    assert long_key[0][1].startswith("~")
    assert long_key[0][1].isascii()
    with pytest.raises(InvalidKey, match="must return str"):
        RuleSet([LimitRule(lim, lambda s: 42)]).resolve(scope_of())  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("bad", [[], ["not a rule"]])
def test_rule_set_config_errors(bad: list[Any]) -> None:
    with pytest.raises(ConfigurationError):
        RuleSet(bad)


def test_rule_set_needs_one_backend() -> None:
    a = RateLimiter("1/s", clock=ManualClock())
    b = RateLimiter("1/s", clock=ManualClock())
    with pytest.raises(ConfigurationError, match="share one backend"):
        RuleSet([LimitRule(a, by_ip()), LimitRule(b, by_ip())])


def test_resolve_remembers_principals_and_addresses_by_identity() -> None:
    limits = tiered_limits(clock=ManualClock())
    first = Principal("u1", tier="premium")
    assert limits.resolve(scope_of(principal=first)) == limits.resolve(scope_of(principal=first))
    # Another object for the same subject on another plan is resolved afresh.
    moved = Principal("u1", tier="free")
    [(tier, key), (_, address)] = limits.resolve(scope_of("198.51.100.7", principal=moved))
    assert (tier.name, key, address) == ("free", "sub:u1", "ip:198.51.100.7")
    # A principal that is not a Principal is anonymous; an address not a str is the peer's.
    scope = {**scope_of(), "sysdesign_kit.principal": "u1", "client": None}
    assert [(lim.name, key) for lim, key in limits.resolve(scope)] == [
        ("anonymous", "ip:unknown"),
        ("ip", "ip:unknown"),
    ]
    long_peer = "x" * 300
    assert limits.resolve(scope_of(long_peer))[0][1] == limits.resolve(scope_of(long_peer))[0][1]
    assert limits.resolve(scope_of(long_peer))[0][1].startswith("ip:~")


def test_resolve_with_trusted_proxies_reads_the_header_each_time() -> None:
    limits = tiered_limits(clock=ManualClock(), trusted_proxies=["10.0.0.1"])
    scope = scope_of("10.0.0.1")
    scope["headers"] = [(b"x-forwarded-for", b"203.0.113.5")]
    assert limits.resolve(scope)[0][1] == "ip:203.0.113.5"
    scope["headers"] = [(b"x-forwarded-for", b"203.0.113.6")]
    assert limits.resolve(scope)[0][1] == "ip:203.0.113.6"
