"""API keys: a visible id for finding the key, a secret part only its hash is kept of.

A key looks like ``sdk_live_Ab3dE6gH9jK1_<43 random letters and digits>``: everything
before the last ``_`` is the key's id (safe to log, show in dashboards, search for in a
leak), the rest is the secret (about 256 bits). The server keeps only
``SHA-256(key)`` (or ``HMAC-SHA256(pepper, key)`` with a server-side pepper, so a leaked
table alone cannot even be checked against guesses), finds the record by the id, and
compares the hashes with `hmac.compare_digest`.

::

    key, record = mint_api_key(subject="billing-service", scopes={"read"}, tier="premium")
    # give `key` to the client once; store `record` (its id and hash, never the key)
    keys = ApiKeyAuthenticator([record])
    middleware = AuthenticationMiddleware(app, api_key=keys)

Records (`sysdesign_kit.gateway.api_key_records`, re-exported here) come from code, a
mapping or list (config), a JSON or JSON-lines file (`load_api_keys_file`), an environment
variable (`load_api_keys_env`), or a ``lookup`` callable (sync or async; a database query)
whose answers are cached for a short while.
Keys expire (``expires_at``, wall-clock seconds, read from the ``clock``) and can be
revoked at run time (`ApiKeyAuthenticator.revoke`).
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.gateway.api_key_records import (
    DEFAULT_KEY_PREFIX,
    ApiKeyRecord,
    hash_api_key,
    load_api_keys,
    load_api_keys_env,
    load_api_keys_file,
    mint_api_key,
)
from sysdesign_kit.principal import Principal

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "MAX_KEY_LENGTH",
    "ApiKeyAuthenticator",
    "ApiKeyRecord",
    "KeyLookup",
    "hash_api_key",
    "load_api_keys",
    "load_api_keys_env",
    "load_api_keys_file",
    "mint_api_key",
]

#: Longest key accepted (characters); longer credentials are refused without hashing.
MAX_KEY_LENGTH = 256
_INVALID = "invalid API key"

#: A lookup by key id: sync or async, None for an unknown id.
KeyLookup = Callable[[str], "ApiKeyRecord | Awaitable[ApiKeyRecord | None] | None"]


class ApiKeyAuthenticator:
    """The `Authenticator` for API keys (``method = "api_key"``).

    Args:
        keys: the records (or anything `load_api_keys` reads); more can be added later.
        lookup: called with a key id not among ``keys`` (sync or async); returns the
            record or None. Its answers, found or not, are kept ``lookup_ttl`` seconds,
            so a key revoked in the database alone is refused within that time
            (`revoke` here takes effect at once).
        pepper: the HMAC key the stored hashes were made with (None: plain SHA-256).
        clock: where expiry is read from (wall-clock ``time()``) and lookups are aged.
        lookup_ttl: seconds a lookup's answer is reused.
        lookup_cache_size: most lookup answers kept (oldest dropped first).

    Raises:
        ConfigurationError: a record is malformed, ids repeat, or a setting is out of range.
    """

    method = "api_key"

    def __init__(
        self,
        keys: Iterable[ApiKeyRecord] | Mapping[str, Any] | None = None,
        *,
        lookup: KeyLookup | None = None,
        pepper: bytes | str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        lookup_ttl: float = 60.0,
        lookup_cache_size: int = 10_000,
    ) -> None:
        if isinstance(pepper, str):
            pepper = pepper.encode("utf-8")
        if pepper is not None and (not isinstance(pepper, bytes) or len(pepper) < 16):
            raise ConfigurationError("pepper must be at least 16 bytes")
        if lookup is not None and not callable(lookup):
            raise ConfigurationError(f"lookup must be callable, got {lookup!r}")
        if not 0 <= lookup_ttl < float("inf") or lookup_cache_size < 1:
            raise ConfigurationError("lookup_ttl must be finite >= 0, lookup_cache_size >= 1")
        self._pepper = pepper
        self._lookup = lookup
        self._clock = clock
        self._ttl = float(lookup_ttl)
        self._cache_size = lookup_cache_size
        self._keys: dict[str, tuple[ApiKeyRecord, Principal]] = {}
        self._looked_up: dict[str, tuple[float, tuple[ApiKeyRecord, Principal] | None]] = {}
        self._revoked: set[str] = set()
        # Compared against when the id is unknown, so a miss costs what a hit costs.
        self._dummy = hash_api_key("sdk_dummy_key", pepper)
        if keys is not None:
            self.replace(load_api_keys(keys))

    def add(self, record: ApiKeyRecord) -> None:
        """Accept the key of ``record`` from now on (replacing a record with the same id)."""
        if not isinstance(record, ApiKeyRecord):
            raise ConfigurationError(f"expected an ApiKeyRecord, got {record!r}")
        self._keys[record.key_id] = (record, record.principal())
        self._looked_up.pop(record.key_id, None)

    def replace(self, records: Iterable[ApiKeyRecord]) -> None:
        """Accept exactly ``records`` from now on (a reload); revocations are kept."""
        fresh: dict[str, tuple[ApiKeyRecord, Principal]] = {}
        for record in records:
            if not isinstance(record, ApiKeyRecord):
                raise ConfigurationError(f"expected an ApiKeyRecord, got {record!r}")
            if record.key_id in fresh:
                raise ConfigurationError(f"API key id {record.key_id!r} appears twice")
            fresh[record.key_id] = (record, record.principal())
        self._keys = fresh
        self._looked_up.clear()

    def revoke(self, key_id: str) -> None:
        """Refuse the key with this id from now on, wherever its record comes from."""
        self._revoked.add(key_id)

    async def authenticate(self, credential: str) -> Principal:
        """The principal of the key ``credential``.

        Raises:
            AuthenticationFailed: ``invalid_token`` for an unknown, wrong, expired or
                revoked key. Only a caller who holds the real key learns that it expired
                or was revoked; anything else is told "invalid API key".
        """
        if len(credential) > MAX_KEY_LENGTH or not credential.isascii():
            raise AuthenticationFailed("API key too long or not ASCII", description=_INVALID)
        key_id, _, secret = credential.rpartition("_")
        entry = self._keys.get(key_id) if key_id and secret else None
        if entry is None and self._lookup is not None and key_id and secret:
            entry = await self._find(key_id)
        digest = hash_api_key(credential, self._pepper)
        if entry is None:
            hmac.compare_digest(digest, self._dummy)
            raise AuthenticationFailed("unknown API key id", description=_INVALID)
        record, principal = entry
        if not hmac.compare_digest(digest, record.key_hash):
            raise AuthenticationFailed(f"wrong secret for API key {key_id}", description=_INVALID)
        if record.revoked or key_id in self._revoked:
            raise AuthenticationFailed(
                f"API key {key_id} is revoked", description="API key revoked"
            )
        if record.expires_at is not None and self._clock.time() >= record.expires_at:
            raise AuthenticationFailed(f"API key {key_id} expired", description="API key expired")
        return principal

    async def _find(self, key_id: str) -> tuple[ApiKeyRecord, Principal] | None:
        now = self._clock.monotonic()
        cached = self._looked_up.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self._lookup is not None  # checked by the caller
        found = self._lookup(key_id)
        if inspect.isawaitable(found):
            found = await found
        if found is not None and not isinstance(found, ApiKeyRecord):
            raise TypeError(f"API key lookup returned {type(found).__name__}, not ApiKeyRecord")
        # A record for another id means the lookup answered another question: refused.
        entry = (found, found.principal()) if found and found.key_id == key_id else None
        cache = self._looked_up
        cache.pop(key_id, None)  # re-inserted below, as the newest
        if len(cache) >= self._cache_size:
            # Oldest first: insertion order is age order, and this stays O(1).
            cache.pop(next(iter(cache)))
        cache[key_id] = (now + self._ttl, entry)
        return entry
