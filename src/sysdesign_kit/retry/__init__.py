"""Retries with exponential backoff and jitter, a total deadline, server-given delays
(``Retry-After``) and a retry budget shared per dependency.

``Retry(on=...)`` is the policy: a decorator for sync and async functions, a direct
``call`` / ``acall``, and an iterator of `Attempt` objects. The last exception is re-raised
as is; an open breaker (`CircuitOpen`) is never retried. ``sysdesign_kit.retry.testing``
makes retries instant in tests.
"""

from sysdesign_kit.retry.attempt import Attempt, Outcome, current_attempt
from sysdesign_kit.retry.backoff import JITTERS, Backoff, JitterName
from sysdesign_kit.retry.budget import RetryBudget
from sysdesign_kit.retry.policy import ExceptionTypes, Retry, RetryAfterHook, retry
from sysdesign_kit.retry.retry_after import default_retry_after, parse_retry_after

__all__ = [
    "JITTERS",
    "Attempt",
    "Backoff",
    "ExceptionTypes",
    "JitterName",
    "Outcome",
    "Retry",
    "RetryAfterHook",
    "RetryBudget",
    "current_attempt",
    "default_retry_after",
    "parse_retry_after",
    "retry",
]
