"""Our gateway pieces as the benchmark uses them, or None (with why) where not built yet.

The gateway lands piece by piece (JWT verifier, authentication middleware, RBAC). Each
function here returns None until the pieces it needs exist; the benchmark then prints the
cases and targets that need them as NOT MEASURED instead of failing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._gateway_jwt import SigningKey

__all__ = ["NOT_BUILT", "Verify", "chain_middleware", "verifier"]

#: What the benchmark prints for a case whose pieces are not in the tree yet.
NOT_BUILT = "not built yet"

#: ``await verify(token)`` -> whatever the verifier returns (claims or a principal).
Verify = Callable[[str], Awaitable[Any]]


def verifier(key: SigningKey, *, cache: bool) -> Verify | None:
    """Our JWT verification of tokens signed with ``key``, with or without the verified-
    token cache; None until ``sysdesign_kit.gateway.jwt`` exists."""
    del key, cache
    return None


def chain_middleware() -> list[Any] | None:
    """The gateway's layers of the full chain, outermost first (authentication, then
    RBAC), for tokens from `chain_key`; None until they exist."""
    return None


def chain_key() -> SigningKey | None:
    """The key the chain's verifier trusts (its tokens are minted with it)."""
    return None
