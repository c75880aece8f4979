"""What the API tells us, as immutable values, and the strict decoding of its answers.

The vendor's documentation contradicts itself on the response envelope, so every
documented variant is accepted: ``code``/``msg`` or ``status``/``reason``, the code
as a JSON number or a numeric string. ``data.status`` is the flow state, never the
envelope status. Anything else of the wrong shape or type is a :class:`ApiError` of
kind ``decode``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any


CODE_TIMESTAMP_EXPIRED = "-16"
CODE_TOO_FREQUENT = "-15"
ACCOUNT_CODES = frozenset({"-1", "-2"})


class ErrorKind(str, enum.Enum):
    """How a request failed. Every failed request has exactly one kind."""

    API = "api"  # the envelope carried a non-zero vendor code
    HTTP = "http"  # the answer was not HTTP 200
    TIMEOUT = "timeout"  # no complete answer within api.timeout
    NETWORK = "network"  # connection refused, reset, DNS, TLS ...
    DECODE = "decode"  # not JSON, or JSON of the wrong shape or types


class ApiError(Exception):
    """A failed request. ``code`` is the vendor code (api) or HTTP status (http), else ''."""

    def __init__(self, kind: ErrorKind, code: str = "", message: str = ""):
        super().__init__(f"{kind.value}{' ' + code if code else ''}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.server_time: float | None = None  # the answer's Date header, as unix time
        self.retry_after: float | None = None  # seconds, from a Retry-After header

    def is_retryable(self) -> bool:
        """Transport trouble worth another try: timeouts, network errors, 5xx and 429."""
        if self.kind in (ErrorKind.TIMEOUT, ErrorKind.NETWORK):
            return True
        return self.kind is ErrorKind.HTTP and (self.code.startswith("5") or self.code == "429")

    def is_clock_skew(self) -> bool:
        return self.kind is ErrorKind.API and self.code == CODE_TIMESTAMP_EXPIRED

    def is_throttle(self) -> bool:
        return (self.kind is ErrorKind.HTTP and self.code == "429") or (
            self.kind is ErrorKind.API and self.code == CODE_TOO_FREQUENT
        )

    def is_account_error(self) -> bool:
        """-1 (authentication) and -2 (restricted IP): the account is broken, not the flow."""
        return self.kind is ErrorKind.API and self.code in ACCOUNT_CODES


class NotSent(Exception):
    """No request was sent for a flow this cycle (deadline, throttling, a broken account)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AccountGuard:
    """Stops a batch of requests once one of them finds the account broken (-1 or -2).

    Pass :meth:`may_send` to the client, and :meth:`note` every outcome."""

    def __init__(self) -> None:
        self.error: ApiError | None = None

    def note(self, outcome: object) -> None:
        if self.error is None and isinstance(outcome, ApiError) and outcome.is_account_error():
            self.error = outcome

    def may_send(self) -> str | None:
        return f"account error {self.error.code}: not sent this cycle" if self.error else None


# The flow and node state scale the vendor documents (shared by flows and nodes).
STATES: tuple[str, ...] = ("pending", "in_progress", "completed", "cancelled", "exception")
UNKNOWN_STATE = "unknown"
TERMINAL_STATUSES = frozenset({2, 3})
RECALL_TYPES = {0: "all", 1: "failed"}


def state_name(status: int) -> str:
    return STATES[status] if 0 <= status < len(STATES) else UNKNOWN_STATE


@dataclass(frozen=True, slots=True)
class NodeDetail:
    key_id: int
    task_id: int | None
    script_id: int | None
    status: int


@dataclass(frozen=True, slots=True)
class FlowDetail:
    status: int
    recall_interval_minutes: int
    recall_num: int
    recall_type: int
    nodes: tuple[NodeDetail, ...]

    @property
    def recall_type_name(self) -> str:
        return RECALL_TYPES.get(self.recall_type, UNKNOWN_STATE)


def _decode_error(message: str) -> ApiError:
    return ApiError(ErrorKind.DECODE, "", message)


def _int(obj: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise _decode_error(f"{where}.{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _decode_error(f"{where}.{key} is not an integer")
    if abs(value) > 2**63:
        raise _decode_error(f"{where}.{key} is out of range")
    return value


def envelope_code(body: Any) -> tuple[int, str]:
    """The vendor code and message of a decoded response body."""
    if not isinstance(body, dict):
        raise _decode_error("the response is not a JSON object")
    raw = body.get("code", body.get("status"))
    if isinstance(raw, bool) or raw is None:
        raise _decode_error("the response has no code or status")
    if isinstance(raw, float) and math.isfinite(raw) and raw == int(raw):
        raw = int(raw)
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            raise _decode_error("the response code is not a number") from None
    if not isinstance(raw, int) or abs(raw) > 2**31:
        raise _decode_error("the response code is not an integer")
    message = body.get("msg", body.get("reason", ""))
    return raw, message if isinstance(message, str) else ""


def _success_data(body: Any) -> dict[str, Any]:
    code, message = envelope_code(body)
    if code != 0:
        raise ApiError(ErrorKind.API, str(code), message[:200])
    data = body.get("data")
    if not isinstance(data, dict):
        raise _decode_error("data is not a JSON object")
    return data


def _objects(data: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of the list ``data[key]`` (absent or null: none), each with its place."""
    raw_list = data.get(key)
    if raw_list is None:
        return []
    if not isinstance(raw_list, list):
        raise _decode_error(f"data.{key} is not a list")
    out = []
    for index, raw in enumerate(raw_list):
        where = f"data.{key}[{index}]"
        if not isinstance(raw, dict):
            raise _decode_error(f"{where} is not a JSON object")
        out.append((where, raw))
    return out


def parse_flow_detail(body: Any) -> FlowDetail:
    """Decode a queryDetail answer; raise ApiError (api or decode) unless it is a success."""
    data = _success_data(body)
    nodes = []
    seen: set[int] = set()
    for where, raw in _objects(data, "nodeList"):
        node = NodeDetail(
            key_id=_int(raw, "keyId", where),  # type: ignore[arg-type]
            task_id=_int(raw, "taskId", where, optional=True),
            script_id=_int(raw, "scriptId", where, optional=True),
            status=_int(raw, "nodeStatus", where),  # type: ignore[arg-type]
        )
        if node.key_id in seen:
            raise _decode_error(f"{where}.keyId {node.key_id} appears twice")
        seen.add(node.key_id)
        nodes.append(node)
    return FlowDetail(
        status=_int(data, "status", "data"),  # type: ignore[arg-type]
        recall_interval_minutes=_int(data, "recallInterval", "data"),  # type: ignore[arg-type]
        recall_num=_int(data, "recallNum", "data"),  # type: ignore[arg-type]
        recall_type=_int(data, "recallType", "data"),  # type: ignore[arg-type]
        nodes=tuple(nodes),
    )


# -- recallFlow/queryPage and group/call/detail ([C] on laaffic.com, inferred for api.itniotech.com) ----------
VENDOR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# States after which a node's group-call task makes no more calls: completed, cancelled, exception.
NODE_ENDED_STATUSES = frozenset({2, 3, 4})
MAX_TEXT = 256  # longest task name kept (label values from the vendor are bounded)


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One record of a recallFlow/queryPage answer: what the list knows of a flow."""

    key_id: int
    task_id: int | None
    task_name: str
    created: float | None  # unix time of createTime, read in api.timezone
    status: int | None
    finish_num: int | None  # recall attempts done (finishNum): only the list reports it


@dataclass(frozen=True, slots=True)
class FlowPage:
    current: int
    pages: int
    total: int
    records: tuple[FlowRecord, ...]


@dataclass(frozen=True, slots=True)
class CallStats:
    """group/call/detail of one node's task; None where the answer leaves a field out."""

    numbers: float | None  # numCnt: phone numbers in the task
    calls: float | None  # callTotal: calls made
    succeeded: float | None  # success: calls answered
    failed: float | None  # fail: calls not answered
    acd_seconds: float | None  # acd: average call duration, seconds


def _loose_number(obj: dict[str, Any], key: str, where: str) -> float | None:
    """A number the vendor may send as a JSON number or a numeric string; None when absent."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _decode_error(f"{where}.{key} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _decode_error(f"{where}.{key} is not a number")
    value = float(value)
    if not math.isfinite(value) or abs(value) > 2**63:
        raise _decode_error(f"{where}.{key} is out of range")
    return value


def _loose_int(obj: dict[str, Any], key: str, where: str, *, optional: bool = True) -> int | None:
    value = _loose_number(obj, key, where)
    if value is None:
        if optional:
            return None
        raise _decode_error(f"{where}.{key} is missing")
    if value != int(value):
        raise _decode_error(f"{where}.{key} is not an integer")
    return int(value)


def _vendor_time(obj: dict[str, Any], key: str, where: str, zone: tzinfo) -> float | None:
    """``YYYY-MM-DD HH:mm:ss`` in ``zone``, or unix time in seconds or milliseconds."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        try:
            return datetime.strptime(value.strip(), VENDOR_TIME_FORMAT).replace(tzinfo=zone).timestamp()
        except (ValueError, OverflowError):
            raise _decode_error(f"{where}.{key} is not a time like 2024-01-31 23:59:59") from None
    number = _loose_number(obj, key, where)
    assert number is not None
    return number / 1000 if abs(number) >= 1e11 else number


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _decode_error(f"{where} is not text")
    # JSON may carry lone surrogates; a label must be encodable text.
    return value[:MAX_TEXT].encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def parse_flow_page(body: Any, zone: tzinfo = timezone.utc) -> FlowPage:
    """Decode a recallFlow/queryPage answer; raise ApiError (api or decode) unless it is a success."""
    data = _success_data(body)
    records = []
    for where, raw in _objects(data, "records"):
        key_id = _loose_int(raw, "keyId", where, optional=False)
        assert key_id is not None
        if key_id < 1:
            raise _decode_error(f"{where}.keyId is not positive")
        records.append(
            FlowRecord(
                key_id=key_id,
                task_id=_loose_int(raw, "taskId", where),
                task_name=_text(raw.get("taskName"), f"{where}.taskName"),
                created=_vendor_time(raw, "createTime", where, zone),
                status=_loose_int(raw, "status", where),
                finish_num=_loose_int(raw, "finishNum", where),
            )
        )
    return FlowPage(
        current=_loose_int(data, "current", "data") or 1,
        pages=_loose_int(data, "pages", "data") or 0,
        total=_loose_int(data, "total", "data") or 0,
        records=tuple(records),
    )


def parse_call_stats(body: Any) -> CallStats:
    """Decode a group/call/detail answer; raise ApiError (api or decode) unless it is a success."""
    data = _success_data(body)
    return CallStats(
        numbers=_loose_number(data, "numCnt", "data"),
        calls=_loose_number(data, "callTotal", "data"),
        succeeded=_loose_number(data, "success", "data"),
        failed=_loose_number(data, "fail", "data"),
        acd_seconds=_loose_number(data, "acd", "data"),
    )
