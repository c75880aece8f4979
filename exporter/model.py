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


def parse_flow_detail(body: Any) -> FlowDetail:
    """Decode a queryDetail answer; raise ApiError (api or decode) unless it is a success."""
    code, message = envelope_code(body)
    if code != 0:
        raise ApiError(ErrorKind.API, str(code), message[:200])
    data = body.get("data")
    if not isinstance(data, dict):
        raise _decode_error("data is not a JSON object")
    raw_nodes = data.get("nodeList")
    if raw_nodes is None:
        raw_nodes = []
    if not isinstance(raw_nodes, list):
        raise _decode_error("data.nodeList is not a list")
    nodes = []
    seen: set[int] = set()
    for index, raw in enumerate(raw_nodes):
        where = f"data.nodeList[{index}]"
        if not isinstance(raw, dict):
            raise _decode_error(f"{where} is not a JSON object")
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
