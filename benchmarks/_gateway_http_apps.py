"""One contender of the HTTP gateway benchmark served by uvicorn, in a process of its own.

    python -m benchmarks._gateway_http_apps CASE

``CASE`` names one stack of `benchmarks._gateway_apps.stacks` (the in-process benchmark's
apps, reused as they are). The process binds 127.0.0.1 on a port the OS picks, prints one
JSON line (``port``, a bearer ``token`` the chain accepts, the ``loop`` and ``http``
implementations uvicorn picked) and serves until its standard input closes (the parent
stopped or died) or ``--lifetime`` seconds have passed, so it never outlives a run.

Every case runs with the same uvicorn settings, those of ``uvicorn --workers 1
--no-access-log --lifespan off --loop auto --http auto`` (uvloop and httptools when
installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

from benchmarks._gateway_apps import stacks
from benchmarks._gateway_ours import chain_key

__all__ = ["implementations", "main"]

#: A run never takes this long; a server still up by then stops by itself.
LIFETIME_S = 900.0


def implementations() -> tuple[str, str]:
    """The event loop and HTTP parser uvicorn's ``auto`` picks here."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def _stop_when_stdin_closes(server: uvicorn.Server) -> None:
    def watch() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
        server.should_exit = True

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _stop_after(server: uvicorn.Server, seconds: float) -> None:
    timer = threading.Timer(seconds, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    """Build the named stack, announce its port and a token, serve until told to stop."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("case", help="a stack name of benchmarks._gateway_apps.stacks()")
    parser.add_argument("--lifetime", type=float, default=LIFETIME_S)
    args = parser.parse_args(argv)

    built = stacks()
    if args.case not in built:
        parser.error(f"unknown case {args.case!r}; known: {sorted(built)}")
    [token] = chain_key().mint(1)
    # proto given: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says IPPROTO_TCP (as the one uvicorn makes from --host/--port does); without
    # it every keep-alive answer waits ~40 ms (Nagle against delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # from here connections queue, so the port can be announced
    loop, http = implementations()
    config = uvicorn.Config(
        built[args.case].app,
        loop="auto",
        http="auto",
        lifespan="off",
        access_log=False,
        log_level="warning",
        workers=1,
    )
    server = uvicorn.Server(config)
    _stop_when_stdin_closes(server)
    _stop_after(server, args.lifetime)
    port = sock.getsockname()[1]
    print(json.dumps({"port": port, "token": token, "loop": loop, "http": http}), flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
