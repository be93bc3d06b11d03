"""The ``sysdesign-kit`` command line.

``sysdesign-kit demo`` runs the reference system (shipped beside this package as the
top-level package ``reference_system``) with scripted traffic and prints a report;
``--serve`` serves it over HTTP instead. The demo needs the ``all`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sysdesign_kit.errors import ConfigurationError

__all__ = ["main"]


def _port(text: str) -> int:
    """A TCP port 1..65535 (argparse turns the ValueError into a usage error, exit 2)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1..65535)")
    return int(text)


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Redis URL (redis://host:port/db, rediss://..., unix:///path)"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sysdesign-kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the reference system demo",
        description="Run the reference system in-process with scripted traffic and print "
        "what the rate limiter did, with latency percentiles and one request's stage "
        "timeline, or serve it over HTTP with --serve (API, /metrics, /live, /ready, /health).",
    )
    demo.add_argument(
        "--serve", action="store_true", help="serve over HTTP until stopped (Ctrl-C, SIGTERM)"
    )
    demo.add_argument("--port", type=_port, default=8000, help="port to serve on (default 8000)")
    demo.add_argument(
        "--host", default="127.0.0.1", help="interface to serve on (default 127.0.0.1)"
    )
    demo.add_argument(
        "--redis",
        metavar="URL",
        type=_redis_url,
        default=None,
        help="keep rate-limit state in Redis (e.g. redis://127.0.0.1:6379/0) instead of memory",
    )
    demo.add_argument(
        "--redis-prefix",
        metavar="PREFIX",
        default="sdk-demo",
        help="key prefix in Redis (default sdk-demo); served instances with the same prefix "
        "share their limits",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sysdesign-kit`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            from reference_system.demo import run
        except ImportError as exc:
            print(
                f"sysdesign-kit demo needs the 'all' extra ({exc.name} is missing): "
                "pip install 'sysdesign-kit[all]'",
                file=sys.stderr,
            )
            return 1
        try:
            return run(
                serve=args.serve,
                host=args.host,
                port=args.port,
                redis_url=args.redis,
                redis_prefix=args.redis_prefix,
            )
        except ConfigurationError as exc:  # a bad Redis URL or prefix: a usage error
            parser.error(str(exc))
        except BrokenPipeError:
            # The reader went away (`sysdesign-kit demo | head`): no traceback, and no second
            # error when Python flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    parser.error(f"unknown command {args.command!r}")  # unreachable: argparse checks choices
    return 2


if __name__ == "__main__":
    sys.exit(main())
