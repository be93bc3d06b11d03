"""API key records: what the server stores about a key (never the key), how keys are
minted, and where records are loaded from (config data, JSON / JSON-lines files, env).

A key looks like ``sdk_live_Ab3dE6gH9jK1_<43 random letters and digits>``: everything
before the last ``_`` is the key's id (safe to log, show in dashboards, search for in a
leak), the rest is the secret (about 256 bits). A record holds the id and
``SHA-256(key)`` (or ``HMAC-SHA256(pepper, key)``), never the key. `ApiKeyAuthenticator`
(`sysdesign_kit.gateway.api_keys`) checks keys against records.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.principal import Principal

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "ApiKeyRecord",
    "hash_api_key",
    "load_api_keys",
    "load_api_keys_env",
    "load_api_keys_file",
    "mint_api_key",
]

#: What minted keys start with; the id follows it.
DEFAULT_KEY_PREFIX = "sdk_live"

_ALPHABET = string.ascii_letters + string.digits
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset(
    {"id", "hash", "subject", "tier", "scopes", "roles", "tenant", "expires_at", "revoked", "name"}
)


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
