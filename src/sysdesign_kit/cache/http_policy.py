"""The pure rules of the HTTP response cache (RFC 9111, RFC 5861): no I/O, no clock.

`parse_cache_control` reads a ``Cache-Control`` field; `response_policy` decides whether a
response may be stored by a shared cache and for how long it is fresh; `request_policy`
reads what the request asks of the cache; `etag_matches` and `not_modified_since` answer
conditional requests from a stored entry.

Anything malformed (a directive that is not a token, a ``max-age`` that is not a number,
an unbalanced quote) makes the whole field unusable, which for a response means "do not
store" and for a request means "do not answer from the cache": a cache that guesses wrong
serves someone else's page, a cache that declines only costs a trip to the app.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = [
    "DEFAULT_CACHEABLE_STATUSES",
    "RequestPolicy",
    "ResponsePolicy",
    "etag_matches",
    "http_date",
    "not_modified_since",
    "parse_cache_control",
    "request_policy",
    "response_policy",
]

#: Final statuses a cache may store without an explicit permission (RFC 9110 15.1).
DEFAULT_CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 405, 410, 414, 501})

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Directives whose argument is delta-seconds: a bad one spoils the field.
_SECONDS = frozenset(
    {"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error", "min-fresh"}
)
# Larger than any useful lifetime; RFC 9111 1.2.2 says to cap, not to reject.
_MAX_SECONDS = 2**31


def parse_cache_control(value: str) -> dict[str, str | None] | None:
    """The directives of a ``Cache-Control`` field value, names lower-cased.

    Args:
        value: the field value (several field lines joined with ``", "``).

    Returns:
        ``{directive: argument or None}``, or None when the value is malformed: a name that
        is not a token, an unbalanced quoted string, a delta-seconds directive whose
        argument is not a non-negative integer, or such a directive given twice with
        different arguments (RFC 9111 4.2.1 says to treat that as stale; not storing and
        not serving is the safe reading).
    """
    directives: dict[str, str | None] = {}
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and value[i] in _TCHAR:
            i += 1
        name = value[start:i].lower()
        if not name:
            return None
        while i < n and value[i] in " \t":
            i += 1
        argument: str | None = None
        if i < n and value[i] == "=":
            i += 1
            while i < n and value[i] in " \t":
                i += 1
            if i < n and value[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and value[i] != '"':
                    if value[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(value[i])
                    i += 1
                if i >= n:
                    return None  # unbalanced quote
                i += 1
                argument = "".join(chars)
            else:
                start = i
                while i < n and value[i] in _TCHAR:
                    i += 1
                argument = value[start:i]
                if not argument:
                    return None
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] != ",":
            return None
        if name in _SECONDS:
            if argument is None or not argument.isdigit() or not argument.isascii():
                return None
            if name in directives and directives[name] != argument:
                return None
        directives[name] = argument
    return directives


def _seconds(directives: Mapping[str, str | None], name: str) -> int | None:
    argument = directives.get(name)
    # parse_cache_control has already checked these are digits.
    return None if argument is None else min(int(argument), _MAX_SECONDS)


def http_date(value: str | None) -> float | None:
    """Seconds since the epoch of an HTTP-date, or None when absent or invalid."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    """What a shared cache may do with one response.

    Attributes:
        storable: whether it may be stored at all.
        reason: why not, when it may not (for logs and tests).
        lifetime: freshness lifetime in seconds (RFC 9111 4.2.1).
        initial_age: the age it already had when received (``Age``, ``Date``; 4.2.3).
        stale_while_revalidate: seconds past the lifetime it may be served while refreshed.
        stale_if_error: seconds past the lifetime it may be served when the app fails.
        must_revalidate: never served stale (``must-revalidate``, ``proxy-revalidate`` or
            ``s-maxage``, which implies ``proxy-revalidate`` for a shared cache).
        immutable: fresh means fresh even to a request asking to revalidate.
        vary: the request fields it varies on, lower-cased and sorted.
    """

    storable: bool
    reason: str = ""
    lifetime: float = 0.0
    initial_age: float = 0.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    must_revalidate: bool = False
    immutable: bool = False
    vary: tuple[str, ...] = ()


def _refuse(reason: str) -> ResponsePolicy:
    return ResponsePolicy(False, reason)


def response_policy(
    status: int,
    headers: Mapping[str, str],
    *,
    now: float,
    request_time: float | None = None,
    cacheable_statuses: Collection[int] = DEFAULT_CACHEABLE_STATUSES,
    heuristic_fraction: float | None = None,
) -> ResponsePolicy:
    """Decide whether a shared cache may store a response to a GET, and its freshness.

    Args:
        status: the response status.
        headers: its fields, names lower-cased, repeated fields joined with ``", "``.
        now: wall-clock seconds when it was received (the response time).
        request_time: wall-clock seconds when the request was sent on; the delay until
            ``now`` is added to an ``Age`` the response carries (RFC 9111 4.2.3).
        cacheable_statuses: statuses stored when explicit freshness is present.
        heuristic_fraction: when set, a response without explicit freshness but with
            ``Last-Modified`` is fresh for this fraction of its age at ``Date``
            (RFC 9111 4.2.2); None stores only explicit freshness.

    Returns:
        A `ResponsePolicy`; ``storable`` is False with a ``reason`` when it may not be stored.
    """
    if status not in cacheable_statuses:
        return _refuse("status")
    if "set-cookie" in headers:
        return _refuse("set-cookie")
    raw = headers.get("cache-control")
    directives = parse_cache_control(raw) if raw is not None else {}
    if directives is None:
        return _refuse("malformed cache-control")
    for name in ("no-store", "private", "no-cache"):
        if name in directives:
            return _refuse(name)
    vary_names: set[str] = set()
    for part in headers.get("vary", "").split(","):
        field = part.strip().lower()
        if field == "*":
            return _refuse("vary *")
        if field:
            vary_names.add(field)
    date = http_date(headers.get("date"))
    age_field = headers.get("age", "").strip()
    age_value = (
        float(min(int(age_field), _MAX_SECONDS))
        if age_field.isdigit() and age_field.isascii()
        else 0.0
    )
    apparent_age = max(0.0, now - date) if date is not None else 0.0
    if age_value and request_time is not None:
        age_value += max(0.0, now - request_time)
    initial_age = max(apparent_age, age_value)
    shared_max_age = _seconds(directives, "s-maxage")
    max_age = _seconds(directives, "max-age")
    lifetime: float
    if shared_max_age is not None:
        lifetime = float(shared_max_age)
    elif max_age is not None:
        lifetime = float(max_age)
    elif "expires" in headers:
        expires = http_date(headers["expires"])
        # An invalid Expires (often "0") means already expired (RFC 9111 5.3).
        lifetime = 0.0 if expires is None else max(0.0, expires - (date or now))
    elif (
        heuristic_fraction is not None
        and (modified := http_date(headers.get("last-modified"))) is not None
    ):
        lifetime = max(0.0, ((date or now) - modified) * heuristic_fraction)
    else:
        return _refuse("no explicit freshness")
    must_revalidate = (
        "must-revalidate" in directives
        or "proxy-revalidate" in directives
        or shared_max_age is not None
    )
    swr = 0.0 if must_revalidate else float(_seconds(directives, "stale-while-revalidate") or 0)
    sie = 0.0 if must_revalidate else float(_seconds(directives, "stale-if-error") or 0)
    if lifetime - initial_age + max(swr, sie) <= 0:
        return _refuse("already stale")
    return ResponsePolicy(
        True,
        lifetime=lifetime,
        initial_age=initial_age,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        must_revalidate=must_revalidate,
        immutable="immutable" in directives,
        vary=tuple(sorted(vary_names)),
    )


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """What a request asks of the cache (RFC 9111 5.2.1).

    Attributes:
        use_stored: whether a stored response may answer it at all (False for
            ``no-cache``, ``Pragma: no-cache`` or a malformed field).
        store: whether its response may be stored (False for ``no-store``).
        max_age: the oldest stored response it accepts, in seconds, or None.
        min_fresh: how long a stored response must stay fresh still, in seconds.
    """

    use_stored: bool = True
    store: bool = True
    max_age: float | None = None
    min_fresh: float = 0.0


_PLAIN_REQUEST = RequestPolicy()


def request_policy(headers: Mapping[str, str]) -> RequestPolicy:
    """Read the request's ``Cache-Control`` (and ``Pragma`` when it has none).

    Args:
        headers: the request fields, names lower-cased, repeats joined with ``", "``.
    """
    raw = headers.get("cache-control")
    if raw is None:
        if "no-cache" in headers.get("pragma", "").lower():
            return RequestPolicy(use_stored=False)
        return _PLAIN_REQUEST
    directives = parse_cache_control(raw)
    if directives is None:
        return RequestPolicy(use_stored=False, store=False)
    max_age = _seconds(directives, "max-age")
    return RequestPolicy(
        use_stored="no-cache" not in directives,
        store="no-store" not in directives,
        max_age=None if max_age is None else float(max_age),
        min_fresh=float(_seconds(directives, "min-fresh") or 0),
    )


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(candidate) == wanted for candidate in if_none_match.split(","))


def not_modified_since(if_modified_since: str, last_modified: str | None) -> bool:
    """Whether a response last modified at ``last_modified`` is unchanged since the date in
    ``If-Modified-Since`` (both HTTP-dates; False when either is absent or invalid)."""
    since = http_date(if_modified_since)
    modified = http_date(last_modified)
    return since is not None and modified is not None and modified <= since
