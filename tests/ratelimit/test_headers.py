from __future__ import annotations

import re

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.ratelimit import (
    MemoryBackend,
    RateLimitDecision,
    RateLimiter,
    RateLimitHeaders,
    retry_after_seconds,
)
from sysdesign_kit.ratelimit.headers import policy_item, sf_string

# RFC 9651: a List of Items whose bare item is an sf-string, parameters key=integer.
_SF_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
_ITEM = rf"{_SF_STRING}(?:;[a-z*][a-z0-9_.*-]*=\d+)+"
SF_LIST = re.compile(rf"^{_ITEM}(?:, {_ITEM})*$")


def limiter(rate: str = "100/minute", name: str = "free", **kw: object) -> RateLimiter:
    return RateLimiter(rate, name=name, backend=MemoryBackend(clock=ManualClock()), **kw)  # type: ignore[arg-type]


def decision(
    lim: RateLimiter, allowed: bool, remaining: int, reset_us: int, retry_us: int = 0
) -> RateLimitDecision:
    return RateLimitDecision(allowed, remaining, reset_us, retry_us, lim)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [("free", '"free"'), ('say "hi"', r'"say \"hi\""'), ("a\\b", r'"a\\b"'), (" ", '" "')],
)
def test_sf_string_escapes(text: str, encoded: str) -> None:
    assert sf_string(text) == encoded


@pytest.mark.parametrize("text", ["caf\u00e9", "tab\t", "new\nline", "\x7f"])
def test_sf_string_rejects(text: str) -> None:
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        sf_string(text)


def test_bad_policy_name_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        RateLimitHeaders([limiter(name="pr\u00e9mium")])


@pytest.mark.parametrize(
    ("rate", "item"),
    [
        ("100/minute", '"p";q=100;w=60'),
        ("20/1m", '"p";q=20;w=60'),
        ("1000/hour", '"p";q=1000;w=3600'),
        ("100/minute burst 150", '"p";q=100;w=60'),
        ("2/500ms", '"p";q=4;w=1'),
        ("3/1.5s", '"p";q=4;w=2'),
        ("1/10ms", '"p";q=100;w=1'),
    ],
)
def test_policy_item(rate: str, item: str) -> None:
    assert policy_item(limiter(rate, name="p")) == item


def test_render_allowed_several_policies() -> None:
    free, ip = limiter(name="free"), limiter("500/minute", name="ip")
    headers = RateLimitHeaders([free, ip])
    rendered = dict(
        headers.render([decision(free, True, 42, 17_000_001), decision(ip, True, 480, 2_000_000)])
    )
    assert rendered == {
        b"ratelimit-policy": b'"free";q=100;w=60, "ip";q=500;w=60',
        b"ratelimit": b'"free";r=42;t=18, "ip";r=480;t=2',
    }
    for value in rendered.values():
        assert SF_LIST.match(value.decode())


def test_render_denied_uses_retry_as_effective_window() -> None:
    free = limiter()
    rendered = dict(
        RateLimitHeaders([free]).render(
            [decision(free, False, 0, 60_000_000, 600_001)], retry_after=True
        )
    )
    assert rendered[b"ratelimit"] == b'"free";r=0;t=1'
    assert rendered[b"retry-after"] == b"1"


@pytest.mark.parametrize(
    ("retry_us", "seconds"),
    [(1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (2_500_000, 3), (59_000_000, 59)],
)
def test_retry_after_rounds_up_and_is_at_least_one(retry_us: int, seconds: int) -> None:
    assert retry_after_seconds([decision(limiter(), False, 0, retry_us, retry_us)]) == seconds


def test_retry_after_takes_the_longest_blocking_wait() -> None:
    a, b, shadow = limiter(name="a"), limiter(name="b"), limiter(name="s", shadow=True)
    decisions = [
        decision(a, False, 0, 0, 2_000_000),
        decision(b, False, 0, 0, 5_000_000),
        decision(shadow, False, 0, 0, 90_000_000),  # shadow never blocks
    ]
    assert retry_after_seconds(decisions) == 5
    assert retry_after_seconds([decision(a, True, 3, 0)]) == 1


def test_legacy_headers_describe_the_closest_policy() -> None:
    free, ip = limiter(name="free"), limiter("500/minute", name="ip")
    headers = RateLimitHeaders([free, ip], legacy=True)
    allowed = dict(
        headers.render([decision(free, True, 9, 5_500_000), decision(ip, True, 400, 1_000_000)])
    )
    assert allowed[b"x-ratelimit-limit"] == b"100"
    assert allowed[b"x-ratelimit-remaining"] == b"9"
    assert allowed[b"x-ratelimit-reset"] == b"6"
    denied = dict(
        headers.render(
            [decision(free, True, 9, 1), decision(ip, False, 0, 3_000_000, 3_000_000)],
            retry_after=True,
        )
    )
    assert denied[b"x-ratelimit-limit"] == b"500"
    assert denied[b"x-ratelimit-remaining"] == b"0"
    assert b"x-ratelimit-limit" not in dict(
        RateLimitHeaders([free]).render([decision(free, True, 1, 1)])
    )


def test_policy_value_is_encoded_once_and_unknown_limiters_on_demand() -> None:
    free = limiter()
    headers = RateLimitHeaders([free])
    assert headers.policy_value([free]) is headers.policy_value([free])
    other = limiter("5/second", name="burst")
    assert headers.as_dict([decision(other, True, 4, 200_000)]) == {
        "ratelimit-policy": '"burst";q=5;w=1',
        "ratelimit": '"burst";r=4;t=1',
    }


def test_ratelimit_value_fills_a_cached_template_names_with_percent_kept() -> None:
    odd = limiter(name="100%d off")
    headers = RateLimitHeaders([odd])
    for remaining in (7, 6):
        assert headers.ratelimit_value([decision(odd, True, remaining, 2_000_001)]) == (
            b'"100%d off";r=' + str(remaining).encode() + b";t=3"
        )
    assert headers.render([]) == [(b"ratelimit-policy", b""), (b"ratelimit", b"")]
