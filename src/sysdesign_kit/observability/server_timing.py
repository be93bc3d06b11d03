"""The request timeline as a ``Server-Timing`` header (W3C Server Timing).

One entry per recorded stage, in the order the stages finished, then ``app`` (time spent
in the application itself: the inner app's time minus the stages recorded inside it) and
``total`` (the whole request as the observability layer saw it), durations in
milliseconds::

    Server-Timing: ratelimit;dur=0.012, auth;dur=0.410, app;dur=3.104, total;dur=3.560

The header is sent with the response head, so ``app`` and ``total`` cover the time until
the app started its response (a streamed body is still running).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["render_server_timing", "stage_token"]

# RFC 9110 token characters: a metric name is a token.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MAX_NAME = 64
_CACHE_LIMIT = 1024
_tokens: dict[str, str] = {}


def stage_token(name: str) -> str:
    """``name`` made a valid metric name: other characters become ``_``, cut at 64.

    Stage names come from code, so there are few of them; each is worked out once.
    """
    token = _tokens.get(name)
    if token is None:
        token = "".join(c if c in _TCHAR else "_" for c in name[:_MAX_NAME]) or "stage"
        if len(_tokens) < _CACHE_LIMIT:
            _tokens[name] = token
    return token


def render_server_timing(stages: Sequence[tuple[str, float]], app: float, total: float) -> bytes:
    """The ``Server-Timing`` value for ``stages`` (seconds) plus ``app`` and ``total``.

    Args:
        stages: ``(name, seconds)`` pairs in the order they ran.
        app: seconds spent in the application outside the recorded stages.
        total: seconds the whole request has taken so far.

    Returns:
        The header value, ASCII-encoded.
    """
    if not stages:
        return f"app;dur={_ms(app):.3f}, total;dur={_ms(total):.3f}".encode("ascii")
    tokens = _tokens
    parts = [
        f"{tokens.get(name) or stage_token(name)};dur={_ms(seconds):.3f}"
        for name, seconds in stages
    ]
    parts.append(f"app;dur={_ms(app):.3f}, total;dur={_ms(total):.3f}")
    return ", ".join(parts).encode("ascii")


def _ms(seconds: float) -> float:
    # Negative, NaN or absurd readings (a stage recorded with a bad start) render as 0
    # rather than as a value no client can parse.
    return seconds * 1000.0 if 0.0 < seconds < 1e9 else 0.0
