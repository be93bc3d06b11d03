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

Records come from code, a mapping or list (config), a JSON or JSON-lines file
(`load_api_keys_file`), an environment variable (`load_api_keys_env`), or a ``lookup``
callable (sync or async; a database query) whose answers are cached for a short while.
Keys expire (``expires_at``, wall-clock seconds, read from the ``clock``) and can be
revoked at run time (`ApiKeyAuthenticator.revoke`).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import os
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.principal import Principal

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "ApiKeyAuthenticator",
    "ApiKeyRecord",
    "KeyLookup",
    "hash_api_key",
    "load_api_keys",
    "load_api_keys_env",
    "load_api_keys_file",
    "mint_api_key",
]

#: What minted keys start with; the id follows it.
DEFAULT_KEY_PREFIX = "sdk_live"
#: Longest key accepted (characters); longer credentials are refused without hashing.
MAX_KEY_LENGTH = 256

_ALPHABET = string.ascii_letters + string.digits
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset(
    {"id", "hash", "subject", "tier", "scopes", "roles", "tenant", "expires_at", "revoked", "name"}
)
_INVALID = "invalid API key"

#: A lookup by key id: sync or async, None for an unknown id.
KeyLookup = Callable[[str], "ApiKeyRecord | Awaitable[ApiKeyRecord | None] | None"]


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the server stores about one API key (never the key itself).

    Attributes:
        key_id: the visible part of the key, before its last ``_`` (``"sdk_live_Ab3d..."``).
        key_hash: lowercase hex of SHA-256 (or HMAC-SHA256 with the pepper) of the whole key.
        subject: the principal's subject (a service or user id).
        tier: the rate-limit tier of the principal.
        scopes: scopes granted.
        roles: roles granted.
        tenant: the tenant, if any.
        expires_at: wall-clock (Unix) seconds from which the key is refused; None: never.
        revoked: refused from now on.
        name: a label for people ("CI deploy key").

    Raises:
        ConfigurationError: the id or hash does not have the expected shape.
    """

    key_id: str
    key_hash: str
    subject: str
    tier: str = "free"
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    expires_at: float | None = None
    revoked: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise ConfigurationError(
                f"API key id {self.key_id!r} must be 1..128 letters, digits and '_'"
            )
        if not isinstance(self.key_hash, str) or not _HEX.fullmatch(self.key_hash):
            raise ConfigurationError(
                f"API key {self.key_id}: hash must be 64 lowercase hex digits (SHA-256)"
            )
        if not isinstance(self.subject, str) or not self.subject:
            raise ConfigurationError(f"API key {self.key_id}: subject must be a non-empty str")
        if self.expires_at is not None and (
            isinstance(self.expires_at, bool) or not isinstance(self.expires_at, int | float)
        ):
            raise ConfigurationError(f"API key {self.key_id}: expires_at must be Unix seconds")

    def principal(self) -> Principal:
        """The principal this key authenticates as (``method="api_key"``)."""
        return Principal(
            self.subject,
            tier=self.tier,
            scopes=self.scopes,
            roles=self.roles,
            tenant=self.tenant,
            method="api_key",
            claims=MappingProxyType({"key_id": self.key_id, "name": self.name}),
        )


def hash_api_key(key: str, pepper: bytes | None = None) -> str:
    """The hex digest stored for ``key``: SHA-256, or HMAC-SHA256 keyed by ``pepper``."""
    data = key.encode("utf-8")
    if pepper is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(pepper, data, hashlib.sha256).hexdigest()


def mint_api_key(
    *,
    subject: str,
    prefix: str = DEFAULT_KEY_PREFIX,
    tier: str = "free",
    scopes: Iterable[str] = (),
    roles: Iterable[str] = (),
    tenant: str | None = None,
    expires_at: float | None = None,
    name: str = "",
    pepper: bytes | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A new random key and the record to store for it.

    The key is returned once: show it to its owner and forget it; only the record's hash
    can check it later.

    Args:
        subject: who the key authenticates as.
        prefix: what the key starts with (letters, digits, ``_``), e.g. ``"sdk_test"``.
        pepper: the authenticator's pepper, when it uses one.

    Returns:
        ``(key, record)``; ``record.key_id`` is the key up to its secret part.
    """
    if not isinstance(prefix, str) or not _KEY_ID.fullmatch(prefix) or len(prefix) > 100:
        raise ConfigurationError(f"prefix {prefix!r} must be 1..100 letters, digits and '_'")
    key_id = f"{prefix}_{_random(12)}"
    key = f"{key_id}_{_random(43)}"  # 43 of 62 symbols: 256 bits
    record = ApiKeyRecord(
        key_id=key_id,
        key_hash=hash_api_key(key, pepper),
        subject=subject,
        tier=tier,
        scopes=frozenset(scopes),
        roles=frozenset(roles),
        tenant=tenant,
        expires_at=expires_at,
        name=name,
    )
    return key, record


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


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
        # A record filed under another id would let one key's secret open another's.
        entry = (found, found.principal()) if found and found.key_id == key_id else None
        cache = self._looked_up
        if len(cache) >= self._cache_size:
            for stale in [k for k, (until, _) in cache.items() if until <= now] or [
                next(iter(cache))
            ]:
                del cache[stale]
        cache[key_id] = (now + self._ttl, entry)
        return entry


def load_api_keys(
    config: Mapping[str, Any] | Iterable[Mapping[str, Any] | ApiKeyRecord],
) -> list[ApiKeyRecord]:
    """Records from configuration data.

    Accepts a list of records (each a mapping with ``id``, ``hash``, ``subject`` and
    optionally ``tier``, ``scopes``, ``roles`` (lists or space-separated strings),
    ``tenant``, ``expires_at`` (Unix seconds or ISO 8601), ``revoked``, ``name``), a
    mapping ``{"keys": [...]}``, or a mapping from id to the rest of a record.

    Raises:
        ConfigurationError: an entry is malformed, names an unknown field, or holds a
            plaintext key.
    """
    if isinstance(config, Mapping):
        if set(config) == {"keys"}:
            items: Iterable[Any] = config["keys"]
        else:
            items = [
                {"id": key_id, **entry} if isinstance(entry, Mapping) else entry
                for key_id, entry in config.items()
            ]
    else:
        items = config
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ConfigurationError("API keys must be a list of records")
    records = [_record(item) for item in items]
    ids = [record.key_id for record in records]
    if len(set(ids)) != len(ids):
        raise ConfigurationError("an API key id appears twice")
    return records


def _record(item: object) -> ApiKeyRecord:
    if isinstance(item, ApiKeyRecord):
        return item
    if not isinstance(item, Mapping):
        raise ConfigurationError(f"an API key record must be a mapping, got {type(item).__name__}")
    if "key" in item or "secret" in item:
        raise ConfigurationError("API key records hold hashes only: remove the plaintext key")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ConfigurationError(f"unknown API key field(s) {sorted(unknown)}")
    for required in ("id", "hash", "subject"):
        if required not in item:
            raise ConfigurationError(f"API key record without {required!r}")
    digest = item["hash"]
    if isinstance(digest, str) and digest.startswith("sha256:"):
        digest = digest[len("sha256:") :]
    return ApiKeyRecord(
        key_id=item["id"],
        key_hash=digest.lower() if isinstance(digest, str) else digest,
        subject=item["subject"],
        tier=_text(item, "tier", "free"),
        scopes=_names(item, "scopes"),
        roles=_names(item, "roles"),
        tenant=item.get("tenant"),
        expires_at=_when(item.get("expires_at")),
        revoked=bool(item.get("revoked", False)),
        name=_text(item, "name", ""),
    )


def _text(item: Mapping[str, Any], name: str, default: str) -> str:
    value = item.get(name, default)
    if not isinstance(value, str):
        raise ConfigurationError(f"API key field {name!r} must be a string")
    return value


def _names(item: Mapping[str, Any], name: str) -> frozenset[str]:
    value = item.get(name, ())
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ConfigurationError(f"API key field {name!r} must be a list of strings or one string")


def _when(value: object) -> float | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return None if value is None else float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigurationError(f"expires_at {value!r} is not ISO 8601") from exc
        if moment.tzinfo is None:
            raise ConfigurationError(f"expires_at {value!r} needs a time zone (e.g. Z)")
        return moment.timestamp()
    raise ConfigurationError(f"expires_at must be Unix seconds or ISO 8601, got {value!r}")


def load_api_keys_file(path: str | os.PathLike[str]) -> list[ApiKeyRecord]:
    """Records from a file: one JSON document (as `load_api_keys` reads), or JSON lines
    (one record per line; blank lines and lines starting with ``#`` skipped).

    Raises:
        ConfigurationError: the file cannot be read or parsed (the line is named).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read API keys from {path}: {exc}") from exc
    try:
        return load_api_keys(json.loads(text))
    except json.JSONDecodeError:
        pass
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return load_api_keys(items)


def load_api_keys_env(name: str = "SYSDESIGN_KIT_API_KEYS") -> list[ApiKeyRecord]:
    """Records from the JSON in environment variable ``name`` (none when it is unset).

    Raises:
        ConfigurationError: the value is not JSON `load_api_keys` accepts.
    """
    text = os.environ.get(name)
    if not text:
        return []
    try:
        return load_api_keys(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"${name} is not JSON ({exc.msg})") from None
