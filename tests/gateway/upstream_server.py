"""Real HTTP servers for the proxy tests: uvicorn in a thread on a loopback ephemeral port.

`Served` runs any ASGI app (an upstream service, or the gateway itself when a test needs
real sockets on both sides). `Upstream` is a small service that tells what it received and
can stream, stall and wait for the test, with threading events as the handshakes between
the test's loop and the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Served:
    """``with Served(app) as server: server.url`` -- the app under uvicorn, in a thread.

    ``lifespan="on"`` for an app that must close what it opened in the server's loop (a
    proxy's pooled connections) before that loop ends.
    """

    def __init__(self, app: ASGIApp, *, lifespan: Literal["on", "off"] = "off") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan=lifespan, log_level="critical", access_log=False,
            proxy_headers=False, ws="none", timeout_graceful_shutdown=1,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


async def _wait(event: threading.Event, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not event.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def wait_for(event: threading.Event, seconds: float = 10.0) -> bool:
    """Wait for a server-side event from the test's loop without blocking it."""
    return await _wait(event, seconds)


class Upstream:
    """An upstream service; paths pick its behaviour, anything else echoes the request.

    - ``/stream?chunks=N``: N chunks; the first at once, the rest after `release` is set.
    - ``/forever``: a chunk every 20 ms until the client goes (`disconnected` is set).
    - ``/slow?seconds=S``: answers after S seconds, or notes a disconnect first.
    - ``/upload``: reads the body chunk by chunk (`first_chunk` set at the first one) and
      answers its size and chunk count.
    - ``/broken``: starts a chunked answer, then fails (the connection is dropped).
    - ``/hop``: an answer carrying hop-by-hop headers and a cookie.
    - anything else: JSON of the method, raw path, query, headers and body received.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.disconnected = threading.Event()
        self.first_chunk = threading.Event()
        self.arrived = threading.Event()  # set once a request has been read
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        if path == "/upload":
            await self._upload(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.seen.append(
            {
                "method": scope["method"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]
                ],
                "body": body.decode("latin-1"),
            }
        )
        self.arrived.set()
        if path == "/stream":
            await self._stream(int(query.get("chunks", "3")), send)
        elif path == "/forever":
            await self._forever(receive, send)
        elif path == "/slow":
            await self._slow(float(query.get("seconds", "5")), receive, send)
        elif path == "/broken":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionAbortedError("the upstream dies mid-body")
        elif path == "/hop":
            await _answer(
                send, 200, b"hop",
                [(b"connection", b"x-hop-named"), (b"x-hop-named", b"1"),
                 (b"keep-alive", b"timeout=5"), (b"proxy-authenticate", b"Basic"),
                 (b"set-cookie", b"a=1; Path=/"), (b"x-upstream", b"yes")],
            )  # fmt: skip
        else:
            await _answer(send, 200, msgspec.json.encode(self.seen[-1]), [
                (b"content-type", b"application/json")
            ])  # fmt: skip

    async def _stream(self, chunks: int, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await _wait(self.release)
        for i in range(1, chunks):
            await send({"type": "http.response.body", "body": b"chunk%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _forever(self, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._note_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while not watcher.done():
                await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
                await asyncio.sleep(0.02)
        finally:
            watcher.cancel()

    async def _slow(self, seconds: float, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._note_disconnect(receive))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(watcher), seconds)
        if watcher.done():
            return
        watcher.cancel()
        await _answer(send, 200, b"late", [])

    async def _note_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()

    async def _upload(self, receive: Receive, send: Send) -> None:
        size = chunks = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            body = message.get("body", b"")
            if body:
                size += len(body)
                chunks += 1
                self.first_chunk.set()
            if not message.get("more_body", False):
                break
        await _answer(send, 200, msgspec.json.encode({"size": size, "chunks": chunks}), [])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
