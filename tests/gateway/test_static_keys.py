from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.x509.oid import NameOID

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.keys import KeySource, VerificationKey
from sysdesign_kit.gateway.static_keys import (
    StaticKeys,
    hmac_key,
    pem_file_key,
    pem_key,
    verification_key,
)

from .jwt_support import SECRET, ec_key, ed448_key, ed25519_key, public_pem, rsa_key

RSA_ALL = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


@pytest.mark.parametrize(
    ("make", "default"),
    [
        (lambda: rsa_key(), {"RS256"}),
        (lambda: ec_key("secp256r1"), {"ES256"}),
        (lambda: ec_key("secp384r1"), {"ES384"}),
        (lambda: ec_key("secp521r1"), {"ES512"}),
        (lambda: ed25519_key(), {"EdDSA"}),
        (lambda: ed448_key(), {"EdDSA"}),
    ],
)
def test_each_key_type_gets_its_own_algorithm_and_only_its_public_half(
    make: Any, default: set[str]
) -> None:
    private = make()
    key = verification_key(private, kid="k1")
    assert key.algorithms == default
    assert key.kid == "k1"
    assert key.key == private.public_key()


def test_rsa_may_be_bound_to_any_rsa_algorithm() -> None:
    assert verification_key(rsa_key(), algorithms=RSA_ALL).algorithms == RSA_ALL
    assert verification_key(rsa_key(), algorithms="PS256").algorithms == {"PS256"}


@pytest.mark.parametrize(
    ("make", "algorithms"),
    [
        (lambda: rsa_key(), ["HS256"]),  # the HS/RS confusion
        (lambda: rsa_key(), ["ES256"]),
        (lambda: rsa_key(), ["none"]),
        (lambda: rsa_key(), []),
        (lambda: ec_key("secp256r1"), ["ES384"]),  # the curve fixes the algorithm
        (lambda: ec_key("secp384r1"), ["ES256"]),
        (lambda: ec_key("secp521r1"), ["ES256", "ES512"]),
        (lambda: ec_key("secp256r1"), ["RS256"]),
        (lambda: ed25519_key(), ["ES256"]),
        (lambda: ed25519_key(), ["HS256"]),
    ],
)
def test_an_algorithm_the_key_cannot_verify_is_refused(make: Any, algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        verification_key(make(), algorithms=algorithms)


def test_weak_or_unsupported_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="1024 bits"):
        verification_key(rsa_key(1024))  # the weakness under test
    with pytest.raises(ConfigurationError, match="secp256k1"):
        verification_key(ec_key("secp256k1"))
    with pytest.raises(ConfigurationError, match="unsupported key type"):
        verification_key(x25519.X25519PrivateKey.generate())
    with pytest.raises(ConfigurationError, match="hmac_key"):
        verification_key(SECRET)


@pytest.mark.parametrize(("alg", "size"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_an_hmac_secret_needs_the_hash_size(alg: str, size: int) -> None:
    assert hmac_key(b"x" * size, algorithms=[alg]).algorithms == {alg}
    with pytest.raises(ConfigurationError, match=f"at least {size}"):
        hmac_key(b"x" * (size - 1), algorithms=[alg])


def test_hmac_secret_rules() -> None:
    assert hmac_key("s" * 32).key == b"s" * 32  # a str is UTF-8
    assert hmac_key(SECRET).algorithms == {"HS256"}
    with pytest.raises(ConfigurationError, match="at least 64"):
        hmac_key(b"x" * 48, algorithms=["HS256", "HS512"])  # the longest hash decides
    with pytest.raises(ConfigurationError):
        hmac_key(SECRET, algorithms=["RS256"])
    with pytest.raises(ConfigurationError):
        hmac_key(SECRET, algorithms=["none"])
    with pytest.raises(ConfigurationError, match="public key"):
        hmac_key(public_pem(rsa_key()))  # a public key is no secret
    with pytest.raises(ConfigurationError, match="public key"):
        hmac_key(b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + b"x" * 64)
    with pytest.raises(ConfigurationError):
        hmac_key(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize("kid", ["", "../../etc/passwd", "a/b", "a\\b", "k" * 257, "ünï", 7])
def test_an_unusable_kid_is_refused(kid: Any) -> None:
    with pytest.raises(ConfigurationError, match="kid"):
        hmac_key(SECRET, kid=kid)


def _certificate(private: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_pem_public_private_and_certificate(tmp_path: Path) -> None:
    private = rsa_key()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for pem in (
        public_pem(private),
        public_pem(private).decode(),
        private_pem,
        _certificate(private),
    ):
        key = pem_key(pem, kid="k", algorithms=["PS256"], issuer="iss")
        assert key == VerificationKey("k", frozenset({"PS256"}), private.public_key(), "iss")
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(ec_key()))
    assert pem_file_key(path).algorithms == {"ES256"}
    assert StaticKeys.from_pem_file(str(path)).keys[0].key == ec_key().public_key()


def test_encrypted_private_pem_needs_its_password() -> None:
    encrypted = ed25519_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert pem_key(encrypted, password=b"pw").algorithms == {"EdDSA"}
    with pytest.raises(ConfigurationError, match="private key"):
        pem_key(encrypted)


@pytest.mark.parametrize(
    "pem",
    [
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_unreadable_pem_is_refused(pem: bytes) -> None:
    with pytest.raises(ConfigurationError, match="unreadable PEM"):
        pem_key(pem)


def test_a_missing_pem_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        pem_file_key(tmp_path / "missing.pem")


def test_static_keys_is_a_key_source_picking_by_kid_then_issuer() -> None:
    by_kid = hmac_key(SECRET, kid="a")
    by_kid_for_x = hmac_key(SECRET, kid="a", issuer="x")
    any_kid_for_y = hmac_key(SECRET, issuer="y")
    keys = StaticKeys(by_kid, by_kid_for_x, any_kid_for_y)
    assert isinstance(keys, KeySource)
    assert keys.get("a") is by_kid
    assert keys.get("a", "x") is by_kid_for_x
    assert keys.get("a", "z") is by_kid
    assert keys.get("b", "y") is any_kid_for_y
    assert keys.get(None, "y") is any_kid_for_y
    assert keys.get("b") is None
    assert keys.get("b", "x") is None
    assert keys.get(None) is None  # several keys: a token must name one


def test_a_kidless_key_answers_every_kid_and_a_sole_key_kidless_tokens() -> None:
    wildcard = StaticKeys(hmac_key(SECRET))
    assert wildcard.get("anything") is wildcard.keys[0]
    assert wildcard.get(None, "any-issuer") is wildcard.keys[0]
    named = StaticKeys.from_secret(SECRET, kid="k1")
    assert named.get(None) is named.keys[0]
    assert named.get("k2") is None


async def test_fetch_is_get() -> None:
    keys = StaticKeys.from_pem(public_pem(rsa_key()), kid="k")
    assert await keys.fetch("k") is keys.keys[0]
    assert await keys.fetch("other") is None


def test_static_keys_refuses_bad_sets() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        StaticKeys()
    with pytest.raises(ConfigurationError, match="two keys"):
        StaticKeys(hmac_key(SECRET, kid="a"), hmac_key(SECRET[::-1], kid="a"))
    with pytest.raises(ConfigurationError, match="VerificationKey"):
        StaticKeys("secret")  # type: ignore[arg-type]
    # A hand-made key is held to the builders' rules: an RSA key for HS256, a short secret.
    with pytest.raises(ConfigurationError):
        StaticKeys(VerificationKey("k", frozenset({"HS256"}), rsa_key().public_key()))
    with pytest.raises(ConfigurationError):
        StaticKeys(VerificationKey("k", frozenset({"HS256"}), public_pem(rsa_key())))
    with pytest.raises(ConfigurationError):
        StaticKeys(VerificationKey("k", frozenset({"HS256"}), b"short"))
    with pytest.raises(ConfigurationError):
        StaticKeys(
            VerificationKey("k", frozenset({"ES256"}), ec.generate_private_key(ec.SECP384R1()))
        )


def test_the_same_key_given_twice_is_kept_once() -> None:
    key = verification_key(rsa_key(), kid="a")
    keys = StaticKeys(key, key, verification_key(rsa_key(), kid="a"))
    assert keys.keys == (key,)
    assert keys.get(None) is key  # still the sole key
