"""`sysdesign-kit demo`: placeholder until the reference system lands."""

from __future__ import annotations


def run(*, serve: bool, host: str, port: int, redis_url: str | None) -> int:
    """Run the demo."""
    print("the reference system demo is being built")
    return 0
