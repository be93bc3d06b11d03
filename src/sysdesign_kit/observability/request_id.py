"""Request ids: accept a caller's well-formed ``X-Request-ID`` or mint one, and expose it.

An incoming id is only trusted when it is short and made of a safe charset (letters, digits
and ``. _ : -``): it ends up in log lines and response headers, where an oversized value or
one carrying control characters, quotes or newlines would be an injection vector. Anything
else is replaced, never echoed.

Fresh ids are a random per-process prefix plus a counter: unique across processes and
restarts, and cheaper than ``uuid4`` (no system call per request). A forked worker draws
its own prefix, so workers forked from one parent never share ids.

While a request runs, its id sits in a context variable, readable by any code (and, through
`RequestIdFilter <sysdesign_kit.observability.logs.RequestIdFilter>`, by every log record)
with `get_request_id`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "REQUEST_ID_SCOPE_KEY",
    "current_request_id",
    "get_request_id",
    "new_request_id",
    "parse_request_id",
    "scope_request_id",
]

#: The ASGI scope key under which the request's id is kept.
REQUEST_ID_SCOPE_KEY = "sysdesign_kit.request_id"
#: The longest incoming id accepted; longer ones are replaced.
MAX_REQUEST_ID_LENGTH = 128

_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"

#: The id of the request the current task is serving (``None`` outside a request).
current_request_id: ContextVar[str | None] = ContextVar("sysdesign_kit.request_id", default=None)


def get_request_id() -> str | None:
    """The id of the request being served by the calling task, if any."""
    return current_request_id.get()


def parse_request_id(value: bytes, max_length: int = MAX_REQUEST_ID_LENGTH) -> str | None:
    """``value`` as a request id if it is well-formed, else ``None``.

    Well-formed: 1 to ``max_length`` bytes, each a letter, digit, ``.``, ``_``, ``:`` or
    ``-``. Deleting the safe bytes and finding nothing left is one C-level pass.
    """
    if 0 < len(value) <= max_length and not value.translate(None, _SAFE):
        return value.decode("ascii")
    return None


_prefix = ""
_next = itertools.count().__next__


def _reseed() -> None:
    global _prefix, _next
    _prefix = os.urandom(8).hex()
    _next = itertools.count(1).__next__


_reseed()
if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A fresh request id: 16 hex digits of per-process randomness, then a hex counter."""
    return f"{_prefix}{_next():08x}"


def scope_request_id(scope: MutableMapping[str, Any]) -> str | None:
    """The id `ObservabilityMiddleware` stored in ``scope``, if any."""
    value = scope.get(REQUEST_ID_SCOPE_KEY)
    return value if isinstance(value, str) else None
