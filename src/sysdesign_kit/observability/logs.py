"""JSON logs on the stdlib `logging` module, request ids on every line, and the access log.

Everything goes through ordinary loggers and handlers, so an application's own logging
set-up (handlers, levels, filters, a ``QueueHandler``) keeps working:

- `JsonFormatter` renders a record as one JSON object per line: ``time``, ``level``,
  ``logger``, ``message``, the request id, any ``extra=`` fields and the traceback.
- `RequestIdFilter`, attached to a handler, stamps ``record.request_id`` on every record
  passing through it, taken from the request the emitting task is serving.
- `AccessLog` writes one line per request to the ``sysdesign_kit.access`` logger (INFO):
  request id, method, route template, path, redacted query, status, duration, client,
  user and user agent. Only these are logged: never a header such as ``Authorization``,
  ``Cookie`` or ``X-API-Key``, and query parameters whose name suggests a credential are
  redacted.

`json_handler` wires the formatter and the filter onto a stream handler in one call.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import IO, Any

import msgspec

from sysdesign_kit.observability._semconv import DEFAULT_SENSITIVE_QUERY_PARAMS
from sysdesign_kit.observability._semconv import redact_query as redact_names
from sysdesign_kit.observability.request_id import current_request_id
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal

__all__ = [
    "ACCESS_LOGGER",
    "SENSITIVE_QUERY_PARAMS",
    "AccessLog",
    "JsonFormatter",
    "RequestIdFilter",
    "json_handler",
    "redact_query",
]

#: The logger the access log writes to.
ACCESS_LOGGER = "sysdesign_kit.access"

#: Query parameters whose value is replaced by ``[REDACTED]`` in the access log (the same
#: names the spans redact; names containing a credential-like word are redacted too).
SENSITIVE_QUERY_PARAMS = DEFAULT_SENSITIVE_QUERY_PARAMS
_REDACTED = "[REDACTED]"
_MAX_QUERY = 1024
_MAX_USER_AGENT = 256

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or a filter.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", "request_id"}
)


class _AccessRecord(logging.LogRecord):
    """A record `AccessLog` builds itself: every standard attribute, set in one go.

    ``LogRecord.__init__`` works out a dozen attributes an access line already knows or
    can copy; building the attribute dict from a template is a third of the cost. Its
    standard attributes come first in ``__dict__``, so a formatter finds the extra fields
    after them without testing every name.
    """


# A stock record's attributes, the template of every `_AccessRecord`.
_TEMPLATE = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, "", (), None).__dict__.copy()
_TEMPLATE_SIZE = len(_TEMPLATE)
_HAS_TASK_NAME = "taskName" in _TEMPLATE  # Python 3.12+
_start_time: float = getattr(logging, "_startTime", time.time())
_pid = os.getpid()


def _new_pid() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_new_pid)


def _access_record(name: str, message: str) -> logging.LogRecord:
    # Mirrors LogRecord.__init__ for level INFO, no args, no caller, no exception; the
    # template's standard names come first in __dict__, the access fields after them.
    created = time.time()
    fields = _TEMPLATE.copy()
    fields["name"] = name
    fields["msg"] = message
    fields["created"] = created
    fields["msecs"] = int((created - int(created)) * 1000) + 0.0
    fields["relativeCreated"] = (created - _start_time) * 1000
    if logging.logThreads:
        fields["thread"] = threading.get_ident()
        fields["threadName"] = threading.current_thread().name
    else:
        fields["thread"] = fields["threadName"] = None
    fields["processName"] = _process_name()
    fields["process"] = _pid if logging.logProcesses else None
    if _HAS_TASK_NAME:
        fields["taskName"] = _task_name()
    record = _AccessRecord.__new__(_AccessRecord)
    record.__dict__ = fields
    return record


def _process_name() -> str | None:
    if not logging.logMultiprocessing:
        return None
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "MainProcess"
    try:
        return str(mp.current_process().name)
    except Exception:  # pragma: no cover - as LogRecord does, never fail over a name
        return "MainProcess"


def _task_name() -> str | None:  # pragma: no cover - Python 3.12+
    if not getattr(logging, "logAsyncioTasks", True):
        return None
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
    except Exception:
        return None
    return task.get_name() if task is not None else None


def _fallback(value: object) -> str:
    return repr(value)


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON (msgspec-encoded).

    Args:
        fields: constant fields added to every line (service name, version...).
    """

    def __init__(self, *, fields: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._fields = dict(fields or {})
        self._encode = msgspec.json.Encoder(enc_hook=_fallback).encode
        self._second = -1
        self._stamp = ""
        self._milli = -1
        self._milli_stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        msecs = int(record.msecs)
        milli = second * 1000 + msecs
        if milli != self._milli:  # lines of the same millisecond share their stamp
            if second != self._second:  # one strftime per second, not per line
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                self._second = second
            self._milli = milli
            self._milli_stamp = f"{self._stamp}.{msecs:03d}Z"
        return self._milli_stamp

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON object (no trailing newline)."""
        doc: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id is not None:
            doc["request_id"] = request_id
        if self._fields:
            doc.update(self._fields)
        items: Iterable[tuple[str, Any]] = record.__dict__.items()
        if type(record) is _AccessRecord:
            items = itertools.islice(items, _TEMPLATE_SIZE, None)
        doc.update({key: value for key, value in items if key not in _STANDARD})
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        try:
            return self._encode(doc).decode()
        except (TypeError, ValueError, OverflowError):
            # A lone surrogate in a message, or a value msgspec refuses even through
            # repr: keep the line, every value made plain text.
            return self._encode({k: _plain(v) for k, v in doc.items()}).decode()


def _plain(value: object) -> object:
    if isinstance(value, bool | int | float | None):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` (``None`` outside a request) and lets the record pass.

    Attach it to a handler (``handler.addFilter(RequestIdFilter())``) so every record the
    handler sees carries the id, whichever logger emitted it; a plain ``%(request_id)s``
    in a text format works too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the id of the request being served, keeping one already set."""
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


def json_handler(
    stream: IO[str] | None = None, *, fields: Mapping[str, object] | None = None
) -> logging.Handler:
    """A stream handler (stderr by default) writing JSON lines with request ids."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(fields=fields))
    handler.addFilter(RequestIdFilter())
    return handler


def _printable(text: str) -> str:
    # A newline or escape sequence in a path or header would forge or garble lines in a
    # plain-text log; JSON escapes them anyway, text formats would not.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def redact_query(query: bytes, sensitive: frozenset[str] = SENSITIVE_QUERY_PARAMS) -> str:
    """``query`` (raw bytes) with the values of credential-like parameters redacted.

    A parameter is sensitive when its name (any case) is in ``sensitive`` or contains
    ``token``, ``secret``, ``passw``, ``apikey``, ``api_key``, ``signature`` or
    ``credential``. The result is cut at 1024 characters and has no control characters.
    """
    return _redactor(sensitive)(query)


@functools.lru_cache(maxsize=16)
def _redactor(sensitive: frozenset[str]) -> Callable[[bytes], str]:
    def redact(query: bytes) -> str:
        text = query.decode("latin-1")
        if len(text) > _MAX_QUERY:
            text = text[:_MAX_QUERY] + "..."
        return _printable(redact_names(text, sensitive, _REDACTED))

    return redact


class AccessLog:
    """One INFO line per request on the ``sysdesign_kit.access`` logger.

    The record's message reads ``GET /items/42 200 3.104ms``; its fields (``request_id``,
    ``method``, ``route``, ``path``, ``query``, ``status``, ``duration_ms``, ``client``,
    ``user``, ``user_agent``, ``error_type``) are record attributes, which `JsonFormatter`
    writes out and a text format can name.

    Args:
        logger: the logger, or its name.
        redact_query_params: parameter names to redact in addition to
            `SENSITIVE_QUERY_PARAMS` (compared case-insensitively).
    """

    __slots__ = ("_redact", "logger")

    def __init__(
        self,
        logger: logging.Logger | str = ACCESS_LOGGER,
        *,
        redact_query_params: Iterable[str] = (),
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        sensitive = SENSITIVE_QUERY_PARAMS | {name.lower() for name in redact_query_params}
        self._redact = _redactor(sensitive)

    def enabled(self) -> bool:
        """Whether a line would be written (the logger is enabled for INFO)."""
        return self.logger.isEnabledFor(logging.INFO)

    def emit(
        self,
        scope: MutableMapping[str, Any],
        *,
        request_id: str,
        route: str,
        status: int,
        duration: float,
        error_type: str | None,
    ) -> None:
        """Write the line for the request of ``scope`` (call only when `enabled`)."""
        method = scope.get("method", "")
        if not method.isprintable():
            method = _printable(method)
        path = scope.get("path", "")
        if not path.isprintable():
            path = _printable(path)
        ms = round(duration * 1000.0, 3)
        client = scope.get("client")
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        user_agent = None
        for name, value in scope.get("headers", ()):
            if name == b"user-agent":
                user_agent = _printable(value[:_MAX_USER_AGENT].decode("latin-1"))
                break
        message = f"{method} {path} {status} {ms:.3f}ms"
        logger = self.logger
        if (
            logging.getLogRecordFactory() is logging.LogRecord
            and type(logger).makeRecord is logging.Logger.makeRecord
        ):
            record = _access_record(logger.name, message)
        else:  # a custom record factory or logger class: let it build the record
            record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None)
        # Set after makeRecord (not as extra=): a record factory that already adds one of
        # these names must not make makeRecord raise.
        fields = record.__dict__
        fields["request_id"] = request_id or None
        fields["method"] = method
        fields["route"] = route
        fields["path"] = path
        query = scope.get("query_string")
        if query:
            fields["query"] = self._redact(query)
        fields["status"] = status
        fields["duration_ms"] = ms
        fields["client"] = client[0] if client else None
        fields["user"] = _printable(principal.subject) if isinstance(principal, Principal) else None
        fields["user_agent"] = user_agent
        if error_type is not None:
            fields["error_type"] = error_type
        logger.handle(record)
