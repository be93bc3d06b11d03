"""The ``sysdesign-kit`` command line.

``sysdesign-kit demo`` runs the reference system (shipped beside this package as the
top-level package ``reference_system``) with scripted traffic and prints a report;
``--serve`` serves it over HTTP instead; ``sysdesign-kit demo token`` prints a token the
demo accepts (signed with ``--jwt-key PATH``, the key the server must be given too). The
demo needs the ``all`` extra.
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


def _ttl(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (1 or more)")
    return int(text)


_JWT_KEY_HELP = (
    "PEM file with the RSA private key (2048 bits or more) signing the demo's RS256 tokens "
    "(default: a key generated at start, so only tokens minted by this process verify)"
)


def _token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token",
        help="print a token the demo accepts",
        description="Print a demo JWT (RS256, issuer sysdesign-kit-demo, audience "
        "reference-system) on stdout. A server verifies it only if it was started with "
        "the same --jwt-key: sysdesign-kit demo --serve --jwt-key PATH.",
    )
    token.add_argument("--tier", choices=("free", "premium"), default="free", help="(free)")
    token.add_argument(
        "--roles", default="", help="roles, comma- or space-separated (e.g. admin; default none)"
    )
    token.add_argument("--scope", default="read", help="scopes, space-separated (default 'read')")
    token.add_argument("--sub", default=None, help="subject (default demo-<tier>-<random>)")
    token.add_argument(
        "--ttl", type=_ttl, default=3600, help="seconds until it expires (default 3600)"
    )
    # SUPPRESS: a `demo --jwt-key PATH token` given before the subcommand is kept.
    token.add_argument("--jwt-key", metavar="PATH", default=argparse.SUPPRESS, help=_JWT_KEY_HELP)


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
    demo.add_argument("--jwt-key", metavar="PATH", default=None, help=_JWT_KEY_HELP)
    _token_parser(demo.add_subparsers(dest="demo_command", metavar="{token}"))
    return parser


def _print_token(args: argparse.Namespace) -> int:
    from reference_system.demo_keys import DemoKeys

    if args.jwt_key is None:
        keys = DemoKeys.generate()
        print(
            "note: no --jwt-key, so this token is signed with a throwaway key; a server "
            "accepts it only if both are given the same --jwt-key PATH",
            file=sys.stderr,
        )
    else:
        keys = DemoKeys.from_pem(args.jwt_key)
    roles = args.roles.replace(",", " ").split()
    print(keys.mint(tier=args.tier, roles=roles, scope=args.scope, sub=args.sub, ttl=args.ttl))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sysdesign-kit`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.demo_command == "token" and args.serve:
            parser.error("demo token prints a token; --serve belongs to demo alone")
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
            if args.demo_command == "token":
                return _print_token(args)
            return run(
                serve=args.serve,
                host=args.host,
                port=args.port,
                redis_url=args.redis,
                redis_prefix=args.redis_prefix,
                jwt_key=args.jwt_key,
            )
        except ConfigurationError as exc:  # a bad Redis URL, prefix or key: a usage error
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
