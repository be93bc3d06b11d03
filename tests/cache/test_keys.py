"""Key templates compiled to functions with the decorated function's parameters; long keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from sysdesign_kit.cache import fit_key
from sysdesign_kit.cache.keys import check_key, compile_key, compile_tags
from sysdesign_kit.errors import ConfigurationError, InvalidKey


@dataclass
class User:
    id: int
    name: str


def product(product_id: int, lang: str = "en", *, currency: str = "EUR") -> None: ...


def everything(a: int, /, b: int = 2, *rest: int, c: int, d: int = 4, **extra: int) -> None: ...


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((42,), {}, "product:42:en:EUR"),
        ((), {"product_id": 42}, "product:42:en:EUR"),
        ((42, "fr"), {"currency": "USD"}, "product:42:fr:USD"),
        ((42,), {"lang": "de"}, "product:42:de:EUR"),
    ],
)
def test_template_binds_like_the_function(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    key_of = compile_key("product:{product_id}:{lang}:{currency}", product)
    assert key_of(*args, **kwargs) == expected


def test_every_parameter_kind() -> None:
    key_of = compile_key("{a}|{b}|{rest}|{c}|{d}|{extra}", everything)
    assert key_of(1, c=3) == "1|2|()|3|4|{}"
    assert key_of(1, 5, 6, 7, c=3, d=8, z=9) == "1|5|(6, 7)|3|8|{'z': 9}"
    with pytest.raises(TypeError):
        key_of(a=1, c=3)  # positional-only, exactly like the function


def test_attributes_conversions_and_specs() -> None:
    def greet(user: User, n: int) -> None: ...

    key_of = compile_key("user:{user.id}:{user.name!r}:{n:05d}:{{literal}}", greet)
    assert key_of(User(7, "ann"), 3) == "user:7:'ann':00003:{literal}"


def test_default_key_names_the_function_and_every_argument() -> None:
    key_of = compile_key(None, product)
    assert key_of(1) == f"{__name__}.product:1:'en':'EUR'"
    assert key_of(1, "fr") != key_of(1)


def test_callable_keys_are_checked() -> None:
    assert compile_key(lambda product_id, **_: f"p{product_id}", product)(3) == "p3"
    with pytest.raises(InvalidKey):
        compile_key(lambda *a, **k: 3, product)(1)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidKey):
        compile_key(lambda *a, **k: "", product)(1)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("p:{missing}", "not a parameter"),
        ("p:{}", "not positions"),
        ("p:{0}", "not positions"),
        ("p:{product_id[0]}", "parameter names and attributes"),
        ("p:{product_id.__class__.class}", "parameter names and attributes"),
        ("p:{product_id:{lang}}", "unsupported spec"),
        ("p:{product_id", "key template"),
        ("", "empty"),
    ],
)
def test_bad_templates(template: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        compile_key(template, product)


def test_bad_spec_type() -> None:
    with pytest.raises(ConfigurationError, match="template str or a callable"):
        compile_key(42, product)  # type: ignore[arg-type]


def test_unreadable_signature() -> None:
    with pytest.raises(ConfigurationError, match="cannot read the parameters"):
        compile_key("{x}", int)


def test_tags() -> None:
    tags_of = compile_tags(["product:{product_id}", "lang:{lang}"], product)
    assert tags_of is not None
    assert tags_of(1, lang="fr") == ("product:1", "lang:fr")
    single = compile_tags("p:{product_id}", product)
    assert single is not None
    assert single(2) == ("p:2",)
    by_callable = compile_tags(lambda product_id, **_: [f"x{product_id}"], product)
    assert by_callable is not None
    assert by_callable(3) == ("x3",)
    assert compile_tags(None, product) is None
    with pytest.raises(ConfigurationError, match="non-empty template"):
        compile_tags([], product)


def test_long_keys_are_hashed_stably() -> None:
    key = "product:" + "x" * 300
    fitted = fit_key(key, 250)
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    assert fitted == key[:217] + "#" + digest
    assert len(fitted) == 250
    assert fit_key(key[:250], 250) == key[:250]  # at the limit: as is
    # pinned: the same in every process and Python version
    assert fit_key("é" * 100, 64).endswith(
        "#" + hashlib.blake2b(("é" * 100).encode(), digest_size=16).hexdigest()
    )
    assert fit_key("\ud800" * 80, 64)  # lone surrogates still hash


def test_check_key() -> None:
    assert check_key("k") == "k"
    with pytest.raises(InvalidKey, match="str"):
        check_key(b"k")
    with pytest.raises(InvalidKey, match="empty"):
        check_key("")
