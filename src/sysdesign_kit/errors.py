"""The one exception tree of sysdesign_kit.

::

    SysdesignError
    ├── ConfigurationError (ValueError)      a value given at construction is wrong
    │   └── InvalidRate                      a rate string that does not parse
    ├── InvalidInput (ValueError)            a value given at call time is wrong
    │   ├── InvalidKey                       empty / oversized / unencodable key
    │   ├── InvalidCost                      cost that is not a positive int within capacity
    │   ├── Unserializable                   a value the cache's serializer cannot encode
    │   ├── ValueTooLarge                    an encoded value over the cache's size limit
    │   └── RequestBodyTooLarge              a request body past the gateway's limit (413)
    ├── AuthenticationFailed                 missing / malformed / invalid credentials (400/401)
    ├── Forbidden                            authenticated, but a role or scope is missing (403)
    ├── Rejected                             a resilience component said no; carries retry_after
    │   ├── RateLimited
    │   └── CircuitOpen                      a breaker is open (or half-open and full)
    └── BackendUnavailable                   a shared backend (Redis...) failed or timed out;
                                             the driver's exception is its ``__cause__``

Later components add their rejections under ``Rejected`` and their HTTP errors beside
these; a caller can catch ``Rejected`` for every "not now, retry after" answer. Retrying
never wraps the caller's exception: when retries run out, the last one is raised as is.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BackendUnavailable",
    "CircuitOpen",
    "ConfigurationError",
    "Forbidden",
    "InvalidCost",
    "InvalidInput",
    "InvalidKey",
    "InvalidRate",
    "RateLimited",
    "Rejected",
    "RequestBodyTooLarge",
    "SysdesignError",
    "Unserializable",
    "ValueTooLarge",
]


class SysdesignError(Exception):
    """Base of every exception this kit raises on purpose."""


class ConfigurationError(SysdesignError, ValueError):
    """A configuration value is wrong; the message names it and says why."""


class InvalidRate(ConfigurationError):
    """A rate string such as ``"100/minute"`` could not be parsed.

    Attributes:
        text: the whole string that was given.
        part: the part of it that is wrong.
    """

    def __init__(self, text: object, part: object, reason: str) -> None:
        self.text = text
        self.part = part
        super().__init__(f"invalid rate {text!r}: {part!r} {reason}")


class InvalidInput(SysdesignError, ValueError):
    """A value given at call time is unusable."""


class InvalidKey(InvalidInput):
    """A rate-limit or cache key is empty, too long or not encodable."""


class InvalidCost(InvalidInput):
    """A cost (weight) is not an int between 1 and what the limit could ever allow."""


class Unserializable(InvalidInput):
    """The cache's serializer cannot encode a value (the encoder's error is ``__cause__``).

    Attributes:
        key: the key the value was meant for.
        type_name: the value's type.
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.type_name = type(value).__name__
        super().__init__(f"cannot cache a {self.type_name} under {key!r}: {reason}")


class ValueTooLarge(InvalidInput):
    """An encoded value is larger than the cache accepts.

    Attributes:
        key: the key the value was meant for.
        size: its encoded size in bytes.
        limit: the cache's ``max_value_bytes``.
    """

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(f"value for {key!r} is {size} bytes encoded, over max_value_bytes={limit}")


class AuthenticationFailed(SysdesignError):
    """A request's credentials are missing, malformed, invalid or expired (RFC 6750).

    The message is for logs; ``description`` is what the caller may be told (never what
    would help an attacker: which key, which check, which byte).

    Attributes:
        error: the RFC 6750 error code: ``"invalid_request"`` (malformed, answered 400) or
            ``"invalid_token"`` (answered 401); empty when no credentials were given.
        description: a short safe text for ``error_description``.
        status: the HTTP status to answer with (400 or 401).
    """

    def __init__(
        self, message: str, *, error: str = "invalid_token", description: str = ""
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description or message
        self.status = 400 if error == "invalid_request" else 401


class RequestBodyTooLarge(InvalidInput):
    """A request body grew past its limit while being read (answered 413).

    Attributes:
        limit: the limit in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class Forbidden(SysdesignError):
    """An authenticated caller lacks a role or scope a route requires (answered 403).

    Attributes:
        scope: the scopes required, space-separated (RFC 6750 ``insufficient_scope``), or
            empty when a role was missing.
        roles: the roles required (any one suffices), if any.
    """

    def __init__(
        self, message: str, *, scope: str = "", roles: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.roles = roles


class Rejected(SysdesignError):
    """A component refused the call for now.

    Attributes:
        retry_after: seconds after which the same call may succeed (``inf`` if it never will).
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Rejected):
    """A rate limit denied the call.

    Attributes:
        decision: the ``RateLimitDecision`` that denied it (limit, remaining, reset...).
    """

    def __init__(self, message: str, *, retry_after: float, decision: object = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.decision = decision


class CircuitOpen(Rejected):
    """A circuit breaker refused the call: it is open, or half-open with every trial taken.

    A fresh instance is raised for every rejection (re-raising one shared instance would
    grow its traceback without bound). Its message is written when it is read, not when it
    is raised: failing fast is this exception's whole job, and most rejections are caught
    and answered (a fallback, a 202) without ever being printed.

    Attributes:
        name: the breaker's name.
        state: ``"open"`` or ``"half_open"``.
        retry_after: seconds until the breaker lets a trial call through (``0.0`` when
            half-open: a trial slot frees up when a running trial finishes).
    """

    def __init__(self, name: str, *, state: str = "open", retry_after: float = 0.0) -> None:
        # args holds the name only: BaseException's own pickling rebuilds the instance
        # from it and restores the attributes from __dict__.
        Exception.__init__(self, name)
        self.retry_after = retry_after
        self.name = name
        self.state = state

    def __str__(self) -> str:
        return (
            f"circuit breaker {self.name!r} is {self.state.replace('_', '-')}; "
            f"retry after {self.retry_after:.3f}s"
        )


class BackendUnavailable(SysdesignError):
    """A shared backend could not answer (connection refused, timeout, script error).

    The driver's own exception is chained as ``__cause__``.
    """
