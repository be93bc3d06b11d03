"""The cache's own call-time errors, both `InvalidInput` (so ``ValueError``) subclasses.

::

    InvalidInput
    ├── InvalidKey            (sysdesign_kit.errors) an empty or non-str key
    ├── Unserializable        the serializer cannot encode the value
    └── ValueTooLarge         the encoded value is over ``max_value_bytes``

A corrupted or undecodable stored value is never an error: it reads as a miss and is reported
(a `BackendFailure` event with ``operation="decode"`` and a warning log).
"""

from __future__ import annotations

from sysdesign_kit.errors import InvalidInput

__all__ = ["Unserializable", "ValueTooLarge"]


class Unserializable(InvalidInput):
    """The cache's serializer cannot encode a value (the encoder's error is ``__cause__``).

    Attributes:
        key: the key the value was meant for.
        type_name: the value's type.
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.type_name = type(value).__name__
        super().__init__(f"cannot cache a {self.type_name} under {key!r}: {reason}")


class ValueTooLarge(InvalidInput):
    """An encoded value is larger than the cache accepts.

    Attributes:
        key: the key the value was meant for.
        size: its encoded size in bytes.
        limit: the cache's ``max_value_bytes``.
    """

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(f"value for {key!r} is {size} bytes encoded, over max_value_bytes={limit}")
