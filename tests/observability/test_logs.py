from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sysdesign_kit.observability import (
    JsonFormatter,
    ObservabilityMiddleware,
    RequestIdFilter,
    json_handler,
)
from sysdesign_kit.observability.logs import ACCESS_LOGGER, redact_query
from sysdesign_kit.observability.request_id import current_request_id
from sysdesign_kit.principal import Principal, set_principal

SECRET = "s3cr3t-Value"


def record(msg: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("app.part", logging.WARNING, __file__, 1, msg, args or ("you",), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_level_logger_message_and_extras() -> None:
    line = JsonFormatter(fields={"service": "orders"}).format(record(order_id=7, tags={"a"}))
    doc = json.loads(line)
    assert doc["time"].endswith("Z")
    assert len(doc["time"]) == len("2024-01-01T00:00:00.000Z")
    assert {k: doc[k] for k in ("level", "logger", "message", "service", "order_id", "tags")} == {
        "level": "WARNING",
        "logger": "app.part",
        "message": "hello you",
        "service": "orders",
        "order_id": 7,
        "tags": ["a"],
    }
    assert "request_id" not in doc
    assert "\n" not in line


def test_exceptions_and_unencodable_extras_still_make_one_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        rec = record("half \ud800 %s", "surrogate", keyed={(1, 2): 3}, obj=object(), n=1)
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    doc = json.loads(line)
    assert "ValueError: broken" in doc["exc_info"]
    assert doc["message"] == "half \\ud800 surrogate"
    assert (doc["keyed"], doc["n"]) == ("{(1, 2): 3}", 1)
    assert doc["obj"].startswith("<object")
    assert "\n" not in line


def test_request_id_comes_from_the_filter_or_the_context() -> None:
    formatter, stamp = JsonFormatter(), RequestIdFilter()
    outside = record()
    assert stamp.filter(outside)
    assert outside.request_id is None  # type: ignore[attr-defined]
    token = current_request_id.set("req-1")
    try:
        inside, preset = record(), record(request_id="kept")
        stamp.filter(inside)
        stamp.filter(preset)
        bare = json.loads(formatter.format(record()))  # no filter: read from the context
    finally:
        current_request_id.reset(token)
    assert (inside.request_id, preset.request_id, bare["request_id"]) == ("req-1", "kept", "req-1")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"q=shoes&page=2", "q=shoes&page=2"),
        (b"token=abc&q=1", "token=[REDACTED]&q=1"),
        (b"API_KEY=abc&Access_Token=x", "API_KEY=[REDACTED]&Access_Token=[REDACTED]"),
        (b"reset_token=a&db_password=b&X-Goog-Signature=c", "reset_token=[REDACTED]"
         "&db_password=[REDACTED]&X-Goog-Signature=[REDACTED]"),
        (b"api%5Fkey=abc&to+ken=x", "api%5Fkey=[REDACTED]&to+ken=x"),
        (b"password", "password"),
        (b"Key=1&monkey=2&token=&code=x",
         "Key=[REDACTED]&monkey=2&token=[REDACTED]&code=[REDACTED]"),
        (b"a=%0Ab\n", "a=%0Ab\\n"),
        (b"q=" + b"x" * 2000, "q=" + "x" * 1022 + "..."),
    ],
)  # fmt: skip
def test_redact_query(query: bytes, expected: str) -> None:
    assert redact_query(query) == expected


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """What a user's JSON handler on the access logger writes."""
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


async def item(request: Request) -> PlainTextResponse:
    logging.getLogger("app.handler").warning("looking up %s", request.path_params["item_id"])
    return PlainTextResponse("ok")


def sync_item(request: Request) -> PlainTextResponse:  # runs in a worker thread
    logging.getLogger("app.handler").warning("sync lookup")
    return PlainTextResponse("ok")


async def as_alice(scope: Any, receive: Any, send: Any) -> None:
    set_principal(scope, Principal("alice"))  # what an auth layer does
    await APP(scope, receive, send)


APP = Starlette(routes=[Route("/items/{item_id}", item), Route("/sync", sync_item)])


def client(app: Any = as_alice, **kwargs: Any) -> httpx.AsyncClient:
    middleware = ObservabilityMiddleware(app, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(middleware), base_url="http://test")


async def test_access_line_has_every_field_and_no_secret(access_lines: io.StringIO) -> None:
    async with client() as http:
        reply = await http.get(
            f"/items/42?token={SECRET}&api_key={SECRET}&q=ok",
            headers={
                "Authorization": f"Bearer {SECRET}",
                "Cookie": f"session={SECRET}",
                "X-API-Key": SECRET,
                "User-Agent": "probe/1.0",
            },
        )
    text = access_lines.getvalue()
    assert SECRET not in text
    (line,) = text.splitlines()
    doc = json.loads(line)
    assert doc["duration_ms"] >= 0
    del doc["time"], doc["duration_ms"]
    assert doc == {
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "message": doc["message"],
        "request_id": reply.headers["x-request-id"],
        "method": "GET",
        "route": "/items/{item_id}",
        "path": "/items/42",
        "query": "token=[REDACTED]&api_key=[REDACTED]&q=ok",
        "status": 200,
        "client": "127.0.0.1",
        "user": "alice",
        "user_agent": "probe/1.0",
    }
    assert doc["message"].startswith("GET /items/42 200 ")


async def test_app_log_lines_carry_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        async with client(APP) as http:
            first = await http.get("/items/1", headers={"X-Request-ID": "trace-me-1"})
            second = await http.get("/sync")
    ids = [
        (r.name, r.getMessage(), getattr(r, "request_id", None))
        for r in caplog.records
        if r.name != "httpx"
    ]
    fresh = second.headers["x-request-id"]
    assert first.headers["x-request-id"] == "trace-me-1"
    assert ids == [
        ("app.handler", "looking up 1", "trace-me-1"),
        (ACCESS_LOGGER, ids[1][1], "trace-me-1"),
        ("app.handler", "sync lookup", fresh),
        (ACCESS_LOGGER, ids[3][1], fresh),
    ]


async def test_failures_are_logged_with_their_error_type(access_lines: io.StringIO) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async with client(broken) as http:
        with pytest.raises(RuntimeError):
            await http.get("/x")
    doc = json.loads(access_lines.getvalue())
    assert (doc["status"], doc["error_type"], doc["route"]) == (500, "RuntimeError", "unmatched")


async def test_control_characters_cannot_forge_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s ua=%(user_agent)s"))
    logger = logging.getLogger("text.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with client(APP, access_logger=logger) as http:
            await http.get("/items/%0Afake%20line", headers={"User-Agent": "a\x1b[31mb"})
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert "\\n" in line
    assert "\\x1b" in line


async def test_extra_redacted_params_and_switching_the_log_off(
    access_lines: io.StringIO,
) -> None:
    async with client(redact_query_params=["Account"]) as http:
        await http.get("/items/1?account=123&q=1")
    async with client(access_log=False) as http:
        await http.get("/items/2")
    (line,) = access_lines.getvalue().splitlines()
    assert json.loads(line)["query"] == "account=[REDACTED]&q=1"


async def test_nothing_is_built_while_the_logger_is_disabled() -> None:
    built: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = factory(*args, **kwargs)
        built.append(rec)
        return rec

    logging.setLogRecordFactory(counting)
    try:
        async with client() as http:  # the access logger is at WARNING (root's default)
            assert (await http.get("/items/1")).status_code == 200
    finally:
        logging.setLogRecordFactory(factory)
    assert [r.name for r in built] == ["app.handler"]


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _served_record(**kwargs: Any) -> logging.LogRecord:
    keep = _Keep()
    logger = logging.getLogger(f"{ACCESS_LOGGER}.records")
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        async with client(access_logger=logger, **kwargs) as http:
            await http.get("/items/9?x=1")
    finally:
        logger.removeHandler(keep)
    (rec,) = keep.records
    return rec


ACCESS_FIELDS = {
    "request_id", "method", "route", "path", "query", "status", "duration_ms", "client",
    "user", "user_agent",
}  # fmt: skip


async def test_the_access_record_is_a_complete_log_record() -> None:
    stock = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    rec = await _served_record()
    assert isinstance(rec, logging.LogRecord)
    assert set(rec.__dict__) == set(stock.__dict__) | ACCESS_FIELDS
    assert (rec.levelname, rec.levelno, rec.name) == (
        "INFO",
        logging.INFO,
        f"{ACCESS_LOGGER}.records",
    )
    assert rec.getMessage().startswith("GET /items/9 200 ")
    assert abs(rec.created - stock.created) < 60
    assert 0 <= rec.msecs < 1000
    assert (rec.process, rec.processName, rec.thread) == (
        stock.process,
        stock.processName,
        stock.thread,
    )
    assert rec.threadName == stock.threadName
    # Any stock format string renders it.
    fmt = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(threadName)s %(relativeCreated)d "
        "%(module)s %(funcName)s %(lineno)d %(message)s %(status)s %(route)s"
    )
    assert fmt.format(rec).endswith(" 200 /items/{item_id}")


async def test_a_custom_record_factory_builds_the_access_record() -> None:
    factory = logging.getLogRecordFactory()

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = factory(*args, **kwargs)
        rec.tenant = "acme"
        rec.status = "set by the factory"  # the access fields win
        return rec

    logging.setLogRecordFactory(tagged)
    try:
        rec = await _served_record()
    finally:
        logging.setLogRecordFactory(factory)
    assert type(rec) is logging.LogRecord
    assert (rec.tenant, rec.status, rec.route) == ("acme", 200, "/items/{item_id}")  # type: ignore[attr-defined]


async def test_filters_fields_reach_the_json_line(access_lines: io.StringIO) -> None:
    class Stamp(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.region = "eu-west"
            record.levelname = "NOTICE"  # a standard name: rendered as "level", not twice
            return True

    stamp = Stamp()
    logging.getLogger(ACCESS_LOGGER).addFilter(stamp)
    try:
        async with client() as http:
            await http.get("/items/3")
    finally:
        logging.getLogger(ACCESS_LOGGER).removeFilter(stamp)
    doc = json.loads(access_lines.getvalue().splitlines()[-1])
    assert (doc["region"], doc["level"], doc["status"]) == ("eu-west", "NOTICE", 200)
    assert "levelname" not in doc
