"""structlog set-up: one event per line, logfmt or JSON, on stderr.

The standard library's loggers (aiohttp's, asyncio's, ``warnings``) go through the same
renderer (:class:`structlog.stdlib.ProcessorFormatter`), so nothing on stderr escapes the
configured format. Their exceptions become one ``error`` field (``Type: message``), never
a traceback. A request aiohttp cannot parse (a client's fault) is a single debug line,
``http_bad_request``; any other foreign warning or error is written at most once per
:data:`FOREIGN_INTERVAL` seconds per message, the next line saying how many were dropped.

Every key and value is made safe in the renderer itself, whatever the event (see
:mod:`exporter.text`): a string value is capped and its control characters escaped visibly
(``\\x1b``), so vendor text (a ``msg``, a ``taskName``) can neither forge a line nor drive a
terminal; and what the stream cannot encode is escaped too (``\\u2713`` on ASCII), so logging
never raises.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from aiohttp import http_exceptions

from .text import encodable, safe

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("logfmt", "json")
FOREIGN_INTERVAL = 10.0
_HANDLER_NAME = "itnio-exporter"


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())[:300]


def _bad_request(record: logging.LogRecord) -> bool:
    """A request aiohttp could not parse: the client's problem, not ours."""
    exc = record.exc_info[1] if record.exc_info else None
    return record.name.startswith("aiohttp.server") and isinstance(exc, http_exceptions.HttpProcessingError)


def _foreign_fields(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """For a stdlib record: its logger's name, its exception as one ``error`` field, and
    a malformed request as ``http_bad_request`` at debug level."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
        if _bad_request(record):
            message = str(event_dict.get("event", ""))  # "Error handling request from <address>"
            event_dict["event"], event_dict["level"] = "http_bad_request", "debug"
            if " from " in message:
                event_dict["remote"] = message.rpartition(" from ")[2][:64]
        if "suppressed" in vars(record):
            event_dict["suppressed"] = vars(record)["suppressed"]
    exc_info = event_dict.pop("exc_info", None)
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        event_dict["error"] = one_line_error(exc_info[1])
    elif isinstance(exc_info, BaseException):
        event_dict["error"] = one_line_error(exc_info)
    event_dict.pop("stack_info", None)
    return event_dict


_PLAIN = (int, float, bool, type(None))


def _safe_value(value: Any, encoding: str | None) -> Any:
    """A value as it may be rendered: strings capped, inert and encodable, containers item by
    item, anything else (an exception, a path) as its text."""
    if isinstance(value, str):
        return encodable(safe(value), encoding)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_safe_value(item, encoding) for item in value]
    if isinstance(value, dict):
        return {_safe_key(k, encoding): _safe_value(v, encoding) for k, v in value.items()}
    return _safe_value(str(value), encoding)


def _safe_key(key: Any, encoding: str | None) -> str:
    """A key logfmt accepts (no space, quote or ``=``: structlog raises on whitespace)."""
    return "".join("_" if ch in ' "=' else ch for ch in _safe_value(str(key), encoding)[:64]) or "_"


def safe_renderer(fmt: str, encoding: str | None) -> Any:
    """The renderer of ``fmt``, fed only safe keys and values (see the module docstring).

    Text the stream cannot encode is escaped value by value, before logfmt quotes it (JSON is
    ASCII already), so that the escape's backslash is quoted like any other."""
    if fmt == "json":
        render: Any = structlog.processors.JSONRenderer()  # ensure_ascii: any stream writes it
        encoding = None
    else:
        render = structlog.processors.LogfmtRenderer(key_order=["ts", "level", "event"], drop_missing=True)

    def renderer(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        fields = {_safe_key(key, encoding): _safe_value(value, encoding) for key, value in event_dict.items()}
        return str(render(logger, method, fields))

    return renderer


class ForeignFilter(logging.Filter):
    """Tames the records of other libraries before they are formatted (see the module docstring)."""

    def __init__(self, level: int, interval: float = FOREIGN_INTERVAL, clock=time.monotonic):
        super().__init__()
        self.level = level
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if "_logger" in vars(record):  # structlog's own, if ever routed here
            return True
        level = logging.DEBUG if _bad_request(record) else record.levelno
        if level < self.level:
            return False
        if level < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            vars(record)["suppressed"] = dropped  # as logging's extra= fields
        return True


def configure(level: str = "info", fmt: str = "logfmt", stream=None) -> None:
    numeric = logging.getLevelName(level.upper())
    stream = stream or sys.stderr
    renderer = safe_renderer(fmt, getattr(stream, "encoding", None))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _foreign_fields,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(ForeignFilter(numeric))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)


def reset() -> None:
    """Undo :func:`configure` for the standard library's loggers (tests configure more than once)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)
