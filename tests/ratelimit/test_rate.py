import pytest

from sysdesign_kit.errors import ConfigurationError, InvalidRate
from sysdesign_kit.ratelimit import Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "limit", "period_us", "burst"),
    [
        ("100/minute", 100, 60_000_000, 100),
        ("20/1m", 20, 60_000_000, 20),
        ("5/second", 5, 1_000_000, 5),
        ("1000/hour", 1000, 3_600_000_000, 1000),
        ("10/5s", 10, 5_000_000, 10),
        ("100 per minute", 100, 60_000_000, 100),
        ("3/day", 3, 86_400_000_000, 3),
        ("7/10 minutes", 7, 600_000_000, 7),
        ("2/500ms", 2, 500_000, 2),
        ("1/0.5s", 1, 500_000, 1),
        ("100/minute burst 150", 100, 60_000_000, 150),
        ("100/minute; burst=20", 100, 60_000_000, 20),
        ("  100 / MINUTE  ", 100, 60_000_000, 100),
    ],
)
def test_parse_rate(text: str, limit: int, period_us: int, burst: int) -> None:
    rate = parse_rate(text)
    assert (rate.limit, rate.period_us, rate.burst) == (limit, period_us, burst)
    assert str(rate) == text.strip()


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("x/minute", "'x'"),
        ("10/fortnight", "'fortnight'"),
        ("10/", "'10/'"),
        ("0/s", "'0'"),
        ("-1/s", "'-1'"),
        ("10/0s", "'0s'"),
        ("", "''"),
        ("1e3/s", "'1e3'"),
        ("10/s burst x", "'x'"),
        ("10/s burst 0", "'0'"),
        ("99999999999/s", "'99999999999'"),
        ("10/400d", "'400d'"),
        ("\u0661\u0660/s", "'\u0661\u0660'"),  # Arabic-Indic digits are not ASCII digits
    ],
)
def test_bad_rates_name_the_bad_part(text: str, part: str) -> None:
    with pytest.raises(InvalidRate) as info:
        parse_rate(text)
    assert part in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConfigurationError)


def test_non_string_rate() -> None:
    with pytest.raises(InvalidRate, match="not a string"):
        parse_rate(100)  # type: ignore[arg-type]


def test_rate_object_validates_and_passes_through() -> None:
    rate = Rate(10, 1_000_000)
    assert rate.burst == 10
    assert parse_rate(rate) is rate
    assert rate.interval_us == 100_000
    assert rate.period == 1.0
    with pytest.raises(InvalidRate):
        Rate(0, 1_000_000)
    with pytest.raises(InvalidRate):
        Rate(10, 1_000_000, burst=-1)
