"""A real HTTP server on 127.0.0.1 that fails, stalls and answers 503 on command.

Tests script what the next requests get (`FlakyServer.script`), then read what the
server saw (`FlakyServer.requests`). It is the stdlib's threading server on an ephemeral
loopback port: real sockets, real timeouts, real connection resets.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """Answer with this status, headers and body."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stall:
    """Wait ``seconds`` (or until the server stops) before answering ``then``."""

    seconds: float
    then: Reply = Reply()


@dataclass(frozen=True)
class Reset:
    """Drop the connection without answering (the client sees a reset)."""


Action = Reply | Stall | Reset


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class FlakyServer:
    """The server; use it through the ``flaky`` fixture (tests/transport/conftest.py)."""

    def __init__(self) -> None:
        self._plan: deque[Action] = deque()
        self._lock = threading.Lock()
        self.default: Action = Reply()
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner._seen(self, body)
                action = owner._next()
                if isinstance(action, Stall):
                    owner.stopping.wait(action.seconds)
                    action = action.then
                if isinstance(action, Reset):
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                self.send_response(action.status)
                for name, value in action.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(action.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(action.body)

            # the stdlib dispatches on do_<METHOD>
            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,))
        self._thread.daemon = True

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *actions: Action) -> None:
        """What the next requests get, in order; then `default`."""
        with self._lock:
            self._plan.extend(actions)

    def _next(self) -> Action:
        with self._lock:
            return self._plan.popleft() if self._plan else self.default

    def _seen(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append(
                Seen(handler.command, handler.path, headers, body, time.monotonic())
            )

    def start(self) -> FlakyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def running() -> Iterator[FlakyServer]:
    """Start a server, yield it, stop it (the body of the ``flaky`` fixture)."""
    server = FlakyServer().start()
    try:
        yield server
    finally:
        server.stop()
