"""API keys: minting, hashes only, constant-time checks, expiry, revocation, loaders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import AuthenticationFailed, ConfigurationError
from sysdesign_kit.gateway.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyRecord,
    hash_api_key,
    load_api_keys,
    load_api_keys_env,
    load_api_keys_file,
    mint_api_key,
)
from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
from sysdesign_kit.gateway.authenticator import Authenticator
from tests.gateway.auth_support import EchoApp, call

PEPPER = b"0123456789abcdef-pepper"


def test_minted_key_shape_and_record() -> None:
    key, record = mint_api_key(subject="svc", scopes=["read"], roles={"admin"}, tier="premium")
    key_id, _, secret = key.rpartition("_")
    assert key_id == record.key_id
    assert key_id.startswith("sdk_live_")
    assert len(secret) == 43
    assert secret.isalnum()
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in repr(record)
    assert record.scopes == {"read"}
    assert record.roles == {"admin"}
    other, _ = mint_api_key(subject="svc")
    assert other != key


def test_authenticator_protocol() -> None:
    assert isinstance(ApiKeyAuthenticator(), Authenticator)
    assert ApiKeyAuthenticator.method == "api_key"


async def test_valid_key_gives_its_principal() -> None:
    key, record = mint_api_key(subject="svc", scopes=["read", "write"], tenant="acme", name="ci")
    keys = ApiKeyAuthenticator([record])
    principal = await keys.authenticate(key)
    assert principal.subject == "svc"
    assert principal.method == "api_key"
    assert principal.scopes == {"read", "write"}
    assert principal.tenant == "acme"
    assert dict(principal.claims) == {"key_id": record.key_id, "name": "ci"}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong secret
        lambda k: k.rpartition("_")[0] + "_",  # no secret
        lambda k: "_" + k.rpartition("_")[2],  # no id
        lambda k: k.replace("sdk_live", "sdk_test"),  # unknown id
        lambda k: k.rpartition("_")[2],  # secret alone
        lambda k: k + "x" * 300,  # too long
        lambda k: "",
    ],
)
async def test_wrong_keys_are_all_just_invalid(mangle: object) -> None:
    key, record = mint_api_key(subject="svc")
    keys = ApiKeyAuthenticator([record])
    with pytest.raises(AuthenticationFailed) as info:
        await keys.authenticate(mangle(key))  # type: ignore[operator]
    assert info.value.error == "invalid_token"
    assert info.value.description == "invalid API key"
    assert info.value.status == 401


async def test_expiry_follows_the_clock() -> None:
    clock = ManualClock()
    key, record = mint_api_key(subject="svc", expires_at=clock.time() + 60)
    keys = ApiKeyAuthenticator([record], clock=clock)
    assert (await keys.authenticate(key)).subject == "svc"
    clock.advance(60)
    with pytest.raises(AuthenticationFailed, match="expired") as info:
        await keys.authenticate(key)
    assert info.value.description == "API key expired"
    # Someone without the secret is not told the id expired.
    with pytest.raises(AuthenticationFailed) as info:
        await keys.authenticate(record.key_id + "_guess")
    assert info.value.description == "invalid API key"


async def test_revocation_at_run_time_and_in_the_record() -> None:
    key, record = mint_api_key(subject="svc")
    keys = ApiKeyAuthenticator([record])
    await keys.authenticate(key)
    keys.revoke(record.key_id)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await keys.authenticate(key)
    keys.replace([record])  # a reload does not resurrect it
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await keys.authenticate(key)
    key2, record2 = mint_api_key(subject="svc2")
    keys.add(dataclasses.replace(record2, revoked=True))
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await keys.authenticate(key2)


async def test_pepper() -> None:
    key, record = mint_api_key(subject="svc", pepper=PEPPER)
    assert record.key_hash == hash_api_key(key, PEPPER) != hash_api_key(key)
    assert (await ApiKeyAuthenticator([record], pepper=PEPPER).authenticate(key)).subject == "svc"
    with pytest.raises(AuthenticationFailed):
        await ApiKeyAuthenticator([record]).authenticate(key)
    assert (
        await ApiKeyAuthenticator([record], pepper=PEPPER.decode()).authenticate(key)
    ).subject == "svc"


async def test_add_and_replace() -> None:
    key1, record1 = mint_api_key(subject="one")
    key2, record2 = mint_api_key(subject="two")
    keys = ApiKeyAuthenticator()
    keys.add(record1)
    assert (await keys.authenticate(key1)).subject == "one"
    keys.replace([record2])
    assert (await keys.authenticate(key2)).subject == "two"
    with pytest.raises(AuthenticationFailed):
        await keys.authenticate(key1)
    with pytest.raises(ConfigurationError, match="twice"):
        keys.replace([record2, record2])
    with pytest.raises(ConfigurationError):
        keys.add("record")  # type: ignore[arg-type]


@pytest.mark.parametrize("is_async", [False, True])
async def test_lookup_callable_is_cached(is_async: bool) -> None:
    clock = ManualClock()
    key, record = mint_api_key(subject="db-user")
    calls: list[str] = []

    def find(key_id: str) -> ApiKeyRecord | None:
        calls.append(key_id)
        return record if key_id == record.key_id else None

    async def afind(key_id: str) -> ApiKeyRecord | None:
        return find(key_id)

    keys = ApiKeyAuthenticator(lookup=afind if is_async else find, clock=clock, lookup_ttl=30)
    for _ in range(3):
        assert (await keys.authenticate(key)).subject == "db-user"
        with pytest.raises(AuthenticationFailed):
            await keys.authenticate("sdk_live_unknown_secret")
    assert calls == [record.key_id, "sdk_live_unknown"]
    clock.advance(30)
    await keys.authenticate(key)
    assert calls[-1] == record.key_id
    assert len(calls) == 3


async def test_lookup_cache_is_bounded_and_checks_the_id() -> None:
    _, stray = mint_api_key(subject="stray")
    keys = ApiKeyAuthenticator(lookup=lambda key_id: stray, lookup_cache_size=2)
    for n in range(5):
        with pytest.raises(AuthenticationFailed):
            # The lookup answers a record filed under another id: refused.
            await keys.authenticate(f"sdk_live_id{n}_secret")
    assert len(keys._looked_up) <= 2


async def test_lookup_returning_junk_raises_for_the_middleware_to_answer_503() -> None:
    keys = ApiKeyAuthenticator(lookup=lambda key_id: "junk")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError):
        await keys.authenticate("sdk_live_x_y")
    app = EchoApp()
    answer = await call(AuthenticationMiddleware(app, api_key=keys), app, [(b"x-api-key", b"a_b")])
    assert answer.status == 503


async def test_through_the_middleware() -> None:
    key, record = mint_api_key(subject="svc", tier="premium")
    app = EchoApp()
    middleware = AuthenticationMiddleware(app, api_key=ApiKeyAuthenticator([record]))
    answer = await call(middleware, app, [(b"x-api-key", key.encode())])
    assert answer.principal is not None
    assert answer.principal.tier == "premium"
    answer = await call(middleware, app, [(b"x-api-key", key.encode()[:-2])])
    assert answer.status == 401


def test_load_from_config_shapes() -> None:
    digest = "a" * 64
    as_list = load_api_keys(
        [
            {
                "id": "sdk_live_one",
                "hash": "sha256:" + digest.upper(),
                "subject": "one",
                "scopes": "read write",
                "roles": ["admin"],
                "tier": "premium",
                "tenant": "t1",
                "expires_at": "2030-01-01T00:00:00Z",
                "name": "first",
                "revoked": False,
            }
        ]
    )
    (record,) = as_list
    assert record.key_hash == digest
    assert record.scopes == {"read", "write"}
    assert record.roles == {"admin"}
    assert record.expires_at == 1893456000.0
    by_id = load_api_keys({"sdk_live_two": {"hash": digest, "subject": "two", "expires_at": 5}})
    assert by_id[0].key_id == "sdk_live_two"
    assert by_id[0].expires_at == 5.0
    wrapped = load_api_keys({"keys": [{"id": "k", "hash": digest, "subject": "s"}]})
    assert wrapped[0].tier == "free"
    keys = ApiKeyAuthenticator({"keys": [{"id": "k", "hash": digest, "subject": "s"}]})
    assert "k" in keys._keys


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"id": "k", "hash": "a" * 64, "subject": "s", "key": "sdk_x_y"}, "hashes only"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "scope": "read"}, "unknown"),
        ({"id": "k", "hash": "a" * 63, "subject": "s"}, "64 lowercase hex"),
        ({"id": "k", "hash": "g" * 64, "subject": "s"}, "64 lowercase hex"),
        ({"id": "bad id", "hash": "a" * 64, "subject": "s"}, "id"),
        ({"hash": "a" * 64, "subject": "s"}, "without 'id'"),
        ({"id": "k", "hash": "a" * 64, "subject": ""}, "subject"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "scopes": [1]}, "scopes"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "tier": 3}, "tier"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "expires_at": "soon"}, "ISO 8601"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "expires_at": "2030-01-01"}, "zone"),
        ({"id": "k", "hash": "a" * 64, "subject": "s", "expires_at": True}, "expires_at"),
    ],
)
def test_config_errors(entry: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        load_api_keys([entry])


def test_config_errors_of_the_whole() -> None:
    entry = {"id": "k", "hash": "a" * 64, "subject": "s"}
    with pytest.raises(ConfigurationError, match="twice"):
        load_api_keys([entry, entry])
    with pytest.raises(ConfigurationError, match="mapping"):
        load_api_keys(["k"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="list of records"):
        load_api_keys({"keys": "k"})
    with pytest.raises(ConfigurationError, match="pepper"):
        ApiKeyAuthenticator(pepper=b"short")
    with pytest.raises(ConfigurationError, match="lookup"):
        ApiKeyAuthenticator(lookup="db")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lookup_ttl"):
        ApiKeyAuthenticator(lookup_ttl=float("inf"))
    with pytest.raises(ConfigurationError, match="prefix"):
        mint_api_key(subject="s", prefix="bad prefix")


async def test_files_json_and_lines(tmp_path: Path) -> None:
    key, record = mint_api_key(subject="from-file")
    entry = {"id": record.key_id, "hash": record.key_hash, "subject": record.subject}
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"keys": [entry]}))
    as_lines = tmp_path / "keys.jsonl"
    as_lines.write_text(f"# deploy keys\n\n{json.dumps(entry)}\n")
    for path in (as_json, as_lines):
        keys = ApiKeyAuthenticator(load_api_keys_file(path))
        assert (await keys.authenticate(key)).subject == "from-file"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(entry) + "\n{nope\n")
    with pytest.raises(ConfigurationError, match=r"broken\.jsonl:2"):
        load_api_keys_file(broken)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_api_keys_file(tmp_path / "missing.json")


async def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    key, record = mint_api_key(subject="from-env")
    entry = {"id": record.key_id, "hash": record.key_hash, "subject": record.subject}
    monkeypatch.setenv("T_API_KEYS", json.dumps([entry]))
    keys = ApiKeyAuthenticator(load_api_keys_env("T_API_KEYS"))
    assert (await keys.authenticate(key)).subject == "from-env"
    monkeypatch.delenv("T_API_KEYS")
    assert load_api_keys_env("T_API_KEYS") == []
    monkeypatch.setenv("T_API_KEYS", "{")
    with pytest.raises(ConfigurationError, match="T_API_KEYS"):
        load_api_keys_env("T_API_KEYS")


@settings(max_examples=300, deadline=None)
@given(credential=st.text(max_size=300))
async def test_any_text_is_refused_cleanly(credential: str) -> None:
    _, record = mint_api_key(subject="svc", expires_at=0.0 if len(credential) % 2 else None)
    keys = ApiKeyAuthenticator([record])
    with pytest.raises(AuthenticationFailed) as info:
        await keys.authenticate(credential)
    assert info.value.status == 401
