"""Decoding the vendor's answers into :mod:`~exporter.vendor.model` values.

The vendor's documentation contradicts itself on the response envelope, so every
documented variant is accepted: ``code``/``msg`` or ``status``/``reason``, the code
as a JSON number or a numeric string. ``data.status`` is the flow state, never the
envelope status. Anything else of the wrong shape or type is an :class:`ApiError` of
kind ``decode``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Any

from .errors import ApiError, ErrorKind
from .model import VENDOR_TIME_FORMAT, CallStats, FlowDetail, FlowPage, FlowRecord, NodeDetail

MAX_TEXT = 256  # longest task name kept (label values from the vendor are bounded)


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


def parse_flow_page(body: Any, zone: tzinfo = UTC) -> FlowPage:
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
