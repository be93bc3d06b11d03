"""The ``sysdesign-kit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sysdesign-kit`` console script."""
    parser = argparse.ArgumentParser(prog="sysdesign-kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the reference system demo")
    demo.add_argument("--serve", action="store_true", help="serve on 127.0.0.1 until stopped")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--redis", metavar="URL", default=None, help="keep limiter state in Redis")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from reference_system.demo import run

        return run(serve=args.serve, host=args.host, port=args.port, redis_url=args.redis)
    return 2


if __name__ == "__main__":
    sys.exit(main())
