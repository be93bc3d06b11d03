"""Key names with a prefix and a ``{hash tag}``: Cluster-safe multi-key scripts."""

from __future__ import annotations

from dataclasses import dataclass

from sysdesign_kit.errors import ConfigurationError

__all__ = ["KeySpace"]


def _escape(part: str) -> str:
    # Parts never contain ':', '{' or '}' after this, so a key splits back unambiguously and
    # only the caller's key forms the hash tag.
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key names under one prefix: ``{prefix}:{part}:...:{part}:{{{tag}}}``.

    The caller's key is the ``{hash tag}``, so every key about one caller key (several
    policies, a breaker and its window) lands in one Cluster slot and a multi-key script
    over them is Cluster-safe. A prefix that itself contains ``{tag}`` pins every key of
    the space to one slot (then any multi-key call is safe, at the cost of sharding).

    Args:
        prefix: the namespace, e.g. ``"myapp"``; 1..100 printable characters.
    """

    prefix: str = "sdk"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.prefix, str)
            or not 0 < len(self.prefix) <= 100
            or not self.prefix.isprintable()
            or " " in self.prefix
        ):
            raise ConfigurationError(
                f"key prefix {self.prefix!r} must be 1..100 printable characters without spaces"
            )

    def head(self, *parts: str) -> str:
        """Everything before the tag, ending in ``{``: append the key and ``}``."""
        return ":".join((self.prefix, *map(_escape, parts), "{"))

    def key(self, *parts: str, tag: str) -> str:
        """The full key for ``parts`` with ``tag`` as its hash tag."""
        return f"{self.head(*parts)}{tag}}}"
