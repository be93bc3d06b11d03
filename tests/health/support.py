"""Helpers for the health tests: scripted checks, and a client that validates every answer.

Every response any health test receives through `client` goes through `check_response`:
health+json bodies against the JSON Schema written from the draft (health_schema.json),
verbose listings and problem documents against their own shapes, and the status code
against the body's status.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from sysdesign_kit.health import Check, Observation

App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

SCHEMA = json.loads((Path(__file__).parent / "health_schema.json").read_text())
Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = Draft202012Validator(SCHEMA)
_LINE = re.compile(r"\[[+-]\]\S+ (ok|excluded: ok|warn: .+|failed: .+)\Z")
_LAST = re.compile(r"(live|ready|health) check (passed|failed)\Z")

#: How many responses were validated (a test asserts the hook really runs).
validated = {"count": 0}


class Scripted(Check):
    """A check whose next outcome the test sets; counts its probes.

    ``outcome`` is an `Observation`, an exception to raise, or ``"hang"`` (never returns).
    """

    def __init__(self, name: str, outcome: object = None, **options: Any) -> None:
        super().__init__(name, **options)
        self.outcome: object = Observation("pass", 1.5, "ms") if outcome is None else outcome
        self.calls = 0
        self.closed = 0
        self.started = 0

    async def probe(self) -> Observation:
        self.calls += 1
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.Event().wait()
        assert isinstance(outcome, Observation)
        return outcome

    async def start(self) -> None:
        self.started += 1

    async def aclose(self) -> None:
        self.closed += 1


class Dependency(Scripted):
    """A scripted check that counts as a dependency (refused at /live)."""

    dependency = True


def check_response(response: httpx.Response) -> None:
    """Assert that a health endpoint's answer is well-formed, whatever it says."""
    validated["count"] += 1
    content_type = response.headers.get("content-type", "")
    assert "content-length" in response.headers
    if response.request.method == "HEAD":
        assert response.content == b""
        assert response.status_code in (200, 503, 400, 404, 405)
        return
    if content_type == "application/health+json":
        document = response.json()
        VALIDATOR.validate(document)
        # Our profile: canonical lower-case statuses and "component:measurement" keys.
        assert document["status"] in ("pass", "warn", "fail")
        for key, entries in document.get("checks", {}).items():
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*:[^:\s]+", key), key
            assert all(entry["status"] in ("pass", "warn", "fail") for entry in entries)
        assert response.status_code == (503 if document["status"] == "fail" else 200)
        assert re.fullmatch(r"max-age=\d+", response.headers["cache-control"])
    elif content_type == "text/plain; charset=utf-8":
        lines = response.text.splitlines()
        assert response.text.endswith("\n")
        assert _LAST.match(lines[-1]), lines[-1]
        for line in lines[:-1]:
            assert _LINE.match(line) or line.startswith("warn: some health checks"), line
        failed = lines[-1].endswith("failed")
        assert response.status_code == (503 if failed else 200)
    else:
        assert content_type == "application/problem+json", content_type
        problem = response.json()
        assert problem["status"] == response.status_code
        assert response.status_code in (400, 404, 405)
        assert {"type", "title", "detail"} <= problem.keys()


async def _hook(response: httpx.Response) -> None:
    await response.aread()
    check_response(response)


def client(app: App) -> httpx.AsyncClient:
    """An httpx client for ``app`` that validates every response it receives."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://health.test",
        event_hooks={"response": [_hook]},
    )


async def settle(rounds: int = 20) -> None:
    """Let every task that is ready run (after a ManualClock advance)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
