"""The scripted server itself behaves as the transport tests assume."""

from __future__ import annotations

import httpx
import pytest

from tests.transport.flaky_server import FlakyServer, Reply, Reset, Stall


def test_scripted_replies_then_the_default(flaky: FlakyServer) -> None:
    flaky.script(Reply(503, b"busy", {"Retry-After": "2"}), Reply(201, b"made"))
    with httpx.Client(base_url=flaky.url) as client:
        first, second, third = (client.post("/pay", content=b"x") for _ in range(3))
    assert (first.status_code, first.headers["retry-after"], first.content) == (503, "2", b"busy")
    assert (second.status_code, third.status_code) == (201, 200)
    assert [(seen.method, seen.path, seen.body) for seen in flaky.requests] == [
        ("POST", "/pay", b"x")
    ] * 3


def test_reset_and_stall(flaky: FlakyServer) -> None:
    flaky.script(Reset(), Stall(5.0))
    with httpx.Client(base_url=flaky.url) as client:
        with pytest.raises(httpx.TransportError):
            client.get("/a")
        with pytest.raises(httpx.ReadTimeout):
            client.get("/b", timeout=httpx.Timeout(5.0, read=0.2))
        assert client.get("/c").status_code == 200
