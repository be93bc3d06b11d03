"""Cache keys: templates compiled once per decorated function, and long keys hashed.

``@cached(key="product:{product_id}")`` is turned, at decoration time, into a small function
with the decorated function's own parameters (defaults included) whose body is one f-string::

    def key(product_id, lang="en"):
        return f"product:{product_id}"

Calling it binds the arguments in C, exactly as the decorated function would, so a call pays
neither ``inspect.signature`` nor ``Signature.bind``. A field is a parameter name, optionally
followed by attributes (``{user.id}``), a conversion (``!r``, ``!s``, ``!a``) and a simple
format spec (``{n:05d}``); positional fields (``{}``, ``{0}``) and indexing are refused.

Keys longer than ``max_key_length`` characters (250 by default, memcached's limit) are stored
as their first characters, ``#`` and the hex BLAKE2b-128 digest of the whole key's UTF-8
bytes: the same in every process and every Python version, exactly ``max_key_length`` long.
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import re
import string
from collections.abc import Callable, Sequence
from typing import Any, cast

from sysdesign_kit.errors import ConfigurationError, InvalidKey

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "MIN_KEY_LENGTH",
    "KeySpec",
    "compile_key",
    "compile_tags",
    "fit_key",
]

#: What ``key=`` accepts: a template string, or a callable given the call's arguments.
KeySpec = str | Callable[..., str]

DEFAULT_MAX_KEY_LENGTH = 250
#: The shortest ``max_key_length`` allowed: room for a few characters, '#' and the digest.
MIN_KEY_LENGTH = 64
_DIGEST_CHARS = 32  # blake2b with digest_size=16, in hex

_ROOT = re.compile(r"[^.\[]*")
_SPEC = re.compile(r"[\w<>=^+\- #.,%]*")
_FORMATTER = string.Formatter()


def fit_key(key: str, limit: int) -> str:
    """``key`` as stored: itself when at most ``limit`` characters, else shortened and hashed.

    >>> fit_key("product:" + "x" * 300, 64)[-33:-32]
    '#'
    """
    if len(key) <= limit:
        return key
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{key[: limit - _DIGEST_CHARS - 1]}#{digest}"


def check_key(key: object) -> str:
    """``key`` if it is a non-empty str.

    Raises:
        InvalidKey: it is not a str, or it is empty.
    """
    if type(key) is not str:
        raise InvalidKey(f"a cache key must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidKey("a cache key must not be empty")
    return key


def compile_key(spec: KeySpec | None, func: Callable[..., Any]) -> Callable[..., str]:
    """The key function for ``func``: from a template, a callable, or (None) every argument.

    The default key is ``module.qualname`` followed by ``:{param!r}`` for each parameter.

    Raises:
        ConfigurationError: a template field that names no parameter of ``func``, uses
            indexing or positions, or has an unsupported format spec; ``spec`` of another
            type.
    """
    if spec is None:
        params = list(_signature(func).parameters)
        template = f"{func.__module__}.{func.__qualname__}".replace("{", "{{").replace("}", "}}")
        template += "".join(f":{{{name}!r}}" for name in params)
        return cast(Callable[..., str], _compile(func, [template], single=True))
    if isinstance(spec, str):
        if not spec:
            raise ConfigurationError("key= must not be an empty template")
        return cast(Callable[..., str], _compile(func, [spec], single=True))
    if callable(spec):
        return _checked(spec)
    raise ConfigurationError(f"key= must be a template str or a callable, got {spec!r}")


def compile_tags(
    spec: Sequence[str] | Callable[..., Sequence[str]] | None, func: Callable[..., Any]
) -> Callable[..., tuple[str, ...]] | None:
    """The tag function for ``func``: templates like keys, or a callable; None for no tags.

    Raises:
        ConfigurationError: as `compile_key`, for each template.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = (spec,)
    if callable(spec):
        tags_of = spec

        def call(*args: Any, **kwargs: Any) -> tuple[str, ...]:
            return tuple(check_key(tag) for tag in tags_of(*args, **kwargs))

        return call
    templates = list(spec)
    if not templates or not all(isinstance(t, str) and t for t in templates):
        raise ConfigurationError(f"tags= must hold non-empty template strings, got {spec!r}")
    return cast(Callable[..., tuple[str, ...]], _compile(func, templates, single=False))


def _checked(key_of: Callable[..., str]) -> Callable[..., str]:
    def call(*args: Any, **kwargs: Any) -> str:
        return check_key(key_of(*args, **kwargs))

    return call


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the parameters of {func!r} ({exc}); give key= as a callable"
        ) from None


def _compile(func: Callable[..., Any], templates: list[str], *, single: bool) -> Any:
    signature = _signature(func)
    names = set(signature.parameters)
    namespace: dict[str, Any] = {}
    exprs = [_fstring(template, names, namespace) for template in templates]
    body = exprs[0] if single else "(" + "".join(f"{expr}, " for expr in exprs) + ")"
    source = f"def __sdk_key({_parameters(signature, namespace)}):\n    return {body}\n"
    # Every name in the source is a parameter name, a checked identifier or a generated
    # global; literal text and defaults are passed as globals, never spelled in the source.
    exec(source, namespace)  # noqa: S102
    compiled = namespace["__sdk_key"]
    compiled.__qualname__ = f"key of {func.__qualname__}"
    return compiled


def _fstring(template: str, names: set[str], namespace: dict[str, Any]) -> str:
    parts: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"key template {template!r}: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            name = f"__sdk_L{len(namespace)}"
            namespace[name] = literal
            parts.append(f"{{{name}}}")
        if field is None:
            continue
        root = _ROOT.match(field).group()  # type: ignore[union-attr]
        rest = field[len(root) :]
        if not root or root.isdigit():
            raise ConfigurationError(
                f"key template {template!r}: fields must name parameters, not positions"
            )
        if root not in names:
            raise ConfigurationError(
                f"key template {template!r}: {root!r} is not a parameter (have {sorted(names)})"
            )
        path = [root, *rest[1:].split(".")] if rest.startswith(".") else [root]
        if rest and not rest.startswith("."):
            path.append(rest)  # indexing: refused just below
        if not all(p.isidentifier() and not keyword.iskeyword(p) for p in path):
            raise ConfigurationError(
                f"key template {template!r}: field {field!r} may only use parameter names "
                "and attributes"
            )
        if spec and not _SPEC.fullmatch(spec):
            raise ConfigurationError(f"key template {template!r}: unsupported spec {spec!r}")
        text = ".".join(path)
        if conversion:
            text += f"!{conversion}"
        if spec:
            text += f":{spec}"
        parts.append(f"{{{text}}}")
    return 'f"' + "".join(parts) + '"' if parts else '""'


def _parameters(signature: inspect.Signature, namespace: dict[str, Any]) -> str:
    out: list[str] = []
    star_done = False
    positional_only = False
    for param in signature.parameters.values():
        kind = param.kind
        if kind is not param.POSITIONAL_ONLY and positional_only:
            out.append("/")
            positional_only = False
        text = param.name
        if kind is param.VAR_POSITIONAL:
            text = f"*{text}"
            star_done = True
        elif kind is param.VAR_KEYWORD:
            text = f"**{text}"
        elif kind is param.KEYWORD_ONLY and not star_done:
            out.append("*")
            star_done = True
        if kind is param.POSITIONAL_ONLY:
            positional_only = True
        if param.default is not param.empty:
            default = f"__sdk_D{len(namespace)}"
            namespace[default] = param.default
            text += f"={default}"
        out.append(text)
    if positional_only:
        out.append("/")
    return ", ".join(out)
