"""structlog set-up: one event per line, logfmt or JSON, on stderr.

The standard library's loggers (aiohttp's, asyncio's, ``warnings``) go through the same
renderer (:class:`structlog.stdlib.ProcessorFormatter`), so nothing on stderr escapes the
configured format. Their exceptions become one ``error`` field (``Type: message``), never
a traceback. A request aiohttp cannot parse (a client's fault) is a single debug line,
``http_bad_request``; any other foreign warning or error is written at most once per
:data:`FOREIGN_INTERVAL` seconds per message, the next line saying how many were dropped.

A line that may repeat in a flood (a failed ``accept()``, a failed login, a foreign warning)
goes through :class:`RateLimitedLog`, the one rate limit of log lines: at most one line per
key every interval, standing for every event of that key since the previous line (the
latest's fields, and how many others: ``suppressed``, or per value with a tally). Its
memory is bounded (:data:`MAX_KEYS` keys), its clock injected, and its timers (to write
what was held back once the interval ends) never outlive :meth:`RateLimitedLog.stop`.

Every key and value is made safe in the renderer itself, whatever the event (see
:mod:`exporter.text`): a string value is capped and its control characters escaped visibly
(``\\x1b``), so vendor text (a ``msg``, a ``taskName``) can neither forge a line nor drive a
terminal; and what the stream cannot encode is escaped too (``\\u2713`` on ASCII), so logging
never raises.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

import structlog
from aiohttp import http_exceptions

from .text import encodable, safe

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("logfmt", "json")
FOREIGN_INTERVAL = 10.0
MAX_KEYS = 1000  # keys a RateLimitedLog remembers
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


class _Key:
    """What a :class:`RateLimitedLog` remembers of one key: when its last line was written,
    and the events since (their number, the latest's name and fields, the tally)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.count = 0
        self.event: str | None = None
        self.fields: dict[str, Any] = {}
        self.tally: Counter[str] = Counter()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, event: str | None = None, fields: dict[str, Any] | None = None, value: str | None = None) -> None:
        self.count += 1
        if event is not None:
            self.event, self.fields = event, fields or {}
        if value is not None:
            self.tally[value] += 1

    def due(self, now: float, interval: float) -> bool:
        return self.last is None or now - self.last >= interval

    @property
    def held(self) -> bool:
        """Events not yet written that a line can be made of."""
        return bool(self.count) and self.event is not None

    def written(self, now: float) -> tuple[int, Counter[str]]:
        """A line written now: the events it stands for, and their tally."""
        count, tally = self.count, self.tally
        self.count, self.tally, self.last = 0, Counter(), now
        self.disarm()
        return count, tally

    def arm(self, timer: asyncio.TimerHandle) -> None:
        self.timer = timer

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class RateLimitedLog:
    """At most one line per key every ``interval`` seconds, written to ``getattr(logger, level)``.

    A line stands for every event of its key since the key's previous line: it carries the
    latest event's fields and ``suppressed=N``, the number of the others (absent when none).
    With ``tally``, that field of the events is counted per value instead: the line carries
    ``count`` (every event it stands for) and ``<tally>s`` (``value:n,...``, sorted by value),
    and no ``suppressed``.

    The events held back are written with the key's next event due, or, with ``flush``, when
    the key's interval ends (a timer on the running loop, which never keeps the loop alive).
    :meth:`stop` cancels every timer and arms no new one. At most ``max_keys`` keys are
    remembered: past that, the key written longest ago is forgotten, with what it held back.

    :meth:`admit` is the bare decision, for a caller that writes the line itself (the filter
    of foreign records); ``logger`` may then be None.
    """

    def __init__(
        self,
        logger: Any,
        *,
        interval: float,
        level: str = "warning",
        clock: Callable[[], float] = time.monotonic,
        tally: str | None = None,
        flush: bool = False,
        max_keys: int = MAX_KEYS,
    ):
        self.logger = logger
        self.interval = interval
        self.level = level
        self.clock = clock
        self.tally = tally
        self.flush_when_due = flush
        self.max_keys = max_keys
        self._keys: OrderedDict[Hashable, _Key] = OrderedDict()  # the key written longest ago first
        self._stopped = False

    def __repr__(self) -> str:
        return f"RateLimitedLog(interval={self.interval}, keys={len(self._keys)})"

    def __len__(self) -> int:
        """The keys remembered."""
        return len(self._keys)

    def _key(self, key: Hashable) -> _Key:
        state = self._keys.get(key)
        if state is None:
            while len(self._keys) >= self.max_keys:
                self._keys.popitem(last=False)[1].disarm()
            state = self._keys[key] = _Key()
        return state

    def admit(self, key: Hashable) -> int | None:
        """One event of ``key``: None when its line is held back (and counted), else the number
        held back since the key's previous line, for the caller to report on this one."""
        state = self._key(key)
        state.add()
        now = self.clock()
        if not state.due(now, self.interval):
            return None
        self._keys.move_to_end(key)
        return state.written(now)[0] - 1

    def log(self, event: str, *, key: Hashable = None, **fields: Any) -> None:
        """One event (its key the event's name unless given): written now if due, else held back."""
        key = event if key is None else key
        state = self._key(key)
        value = str(fields.pop(self.tally, "")) if self.tally is not None else None
        state.add(event, fields, value)
        now = self.clock()
        if state.due(now, self.interval):
            self._write(key, state, now)
        elif self.flush_when_due and state.timer is None and not self._stopped:
            self._arm(key, state, now)

    def _write(self, key: Hashable, state: _Key, now: float) -> None:
        self._keys.move_to_end(key)
        event, fields = state.event, state.fields
        count, tally = state.written(now)
        if self.tally is not None:
            extra: dict[str, Any] = {
                "count": count,
                f"{self.tally}s": ",".join(f"{value}:{n}" for value, n in sorted(tally.items())),
            }
        else:
            extra = {"suppressed": count - 1} if count > 1 else {}
        getattr(self.logger, self.level)(event, **{**fields, **extra})

    def _arm(self, key: Hashable, state: _Key, now: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: written with the key's next event due
        wait = (state.last or now) + self.interval - now
        state.arm(loop.call_later(max(0.0, wait), self._interval_ended, key))

    def _interval_ended(self, key: Hashable) -> None:
        state = self._keys.get(key)
        if state is None or self._stopped:
            return
        state.disarm()
        if state.held:
            self._write(key, state, self.clock())

    def flush(self) -> None:
        """Write every key's held-back events now (what the timers do once an interval ends)."""
        for key, state in list(self._keys.items()):
            if state.held:
                self._write(key, state, self.clock())

    def stop(self) -> None:
        """Cancel every timer; none is armed from now on (what is held back stays unwritten)."""
        self._stopped = True
        for state in self._keys.values():
            state.disarm()


class ForeignFilter(logging.Filter):
    """Tames the records of other libraries before they are formatted (see the module docstring)."""

    def __init__(self, level: int, interval: float = FOREIGN_INTERVAL, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.level = level
        self.limit = RateLimitedLog(None, interval=interval, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if "_logger" in vars(record):  # structlog's own, if ever routed here
            return True
        level = logging.DEBUG if _bad_request(record) else record.levelno
        if level < self.level:
            return False
        if level < logging.WARNING:
            return True
        dropped = self.limit.admit((record.name, str(record.msg)[:200]))
        if dropped is None:
            return False
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
