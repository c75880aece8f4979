"""Decoding the vendor's answers into :mod:`~exporter.vendor.model` values: one set of rules for every endpoint.

The vendor's pages contradict themselves, so decoding is tolerant where the vendor has
been seen to vary, and strict where a value could only be guessed. The rules (the
user-facing version is in docs/, "How answers are decoded"):

- **Envelope.** ``code``/``msg`` or ``status``/``reason``; the code a JSON number or a
  numeric string (both are documented). Any non-zero code is a failure (kind ``api``).
  ``data.status`` is the flow state, never the envelope status.
- **Numbers.** Every documented numeric field accepts a JSON number or a numeric string:
  ``2``, ``"2"``, ``" 2 "``, ``2.0``, ``"2.0"``, ``"1e3"``. An integer field rejects
  ``2.5``, booleans, objects, lists, ``NaN``/``Infinity`` and non-numeric text; every
  number must lie within ±2**63. A number sent as text where the vendor documents a
  number is used, and counted as drift (``string_number``).
- **Absent fields.** ``null`` counts as absent. A required field that is absent fails the
  answer (kind ``decode``); an optional documented field that is absent is counted as
  drift (``missing``) and left out.
- **Unknown fields** are ignored.
- **Nodes.** A ``nodeList`` entry that cannot be read (not an object; ``keyId``,
  ``nodeStatus``, ``taskId`` or ``scriptId`` unreadable; ``keyId`` or ``nodeStatus``
  absent; a ``keyId`` seen before in the same answer) is dropped and counted as drift
  (``unreadable_node``); the flow keeps its other nodes. What fails a whole queryDetail
  answer is the envelope, ``data`` not being an object, or an unreadable or absent
  flow-level field (``status``, ``recallInterval``, ``recallNum``, ``recallType``).
- **Pages.** A queryPage answer holding more records than the ``size`` asked for keeps
  the first ``size`` and counts the rest as drift (``excess_records``): the API does not
  decide how many flows one page costs.

- **Balance.** The getBalance answer is flat (``status``, ``reason``, ``balance``, ``gift``,
  ``credit``; no ``data``) and documents its amounts as strings: a numeric string there is
  not drift, and a JSON number is accepted too. ``balance`` is required; an absent ``gift``
  or ``credit`` is ``missing`` drift and has no series.

Drift is noted once per answer for each (field, kind): the field is the documented
path without list indices (``data.nodeList.nodeStatus``), or ``other``, so the label
values are a fixed set (:data:`DRIFT_SERIES`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from .endpoints import GET_BALANCE, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from .errors import ApiError, ErrorKind
from .model import (
    BALANCE_KINDS,
    VENDOR_TIME_FORMAT,
    Balance,
    CallStats,
    Drift,
    Envelope,
    FlowDetail,
    FlowPage,
    FlowRecord,
    NodeDetail,
)

MAX_TEXT = 256  # longest task name kept (label values from the vendor are bounded)
MAX_NUMBER_TEXT = 40  # longer numeric strings are not numbers worth reading (nor worth the parsing time)
LIMIT = 2**63
ENVELOPE_LIMIT = 2**31

# Drift kinds (the `kind` label of itnio_api_schema_drift_total).
STRING_NUMBER = "string_number"
MISSING = "missing"
UNREADABLE_NODE = "unreadable_node"
EXCESS_RECORDS = "excess_records"
DRIFT_KINDS = (STRING_NUMBER, MISSING, UNREADABLE_NODE, EXCESS_RECORDS)
OTHER_FIELD = "other"

# Every (field, kind) of drift each endpoint can show: the documented fields and what can happen to them.
# The `field` label takes these values or `other`; the series are pre-initialised for the endpoints in use.
_NODE_FIELDS = ("data.nodeList.keyId", "data.nodeList.nodeStatus", "data.nodeList.taskId", "data.nodeList.scriptId")
DRIFT_SERIES: dict[str, tuple[tuple[str, str], ...]] = {
    QUERY_DETAIL: (
        *((name, STRING_NUMBER) for name in (
            "data.keyId", "data.status", "data.recallInterval", "data.recallNum", "data.recallType", *_NODE_FIELDS)),
        *((name, MISSING) for name in ("msg", "data.keyId", "data.nodeList", "data.nodeList.taskId", "data.nodeList.scriptId")),
        *((name, UNREADABLE_NODE) for name in ("data.nodeList", *_NODE_FIELDS)),
    ),
    QUERY_PAGE: (
        *((name, STRING_NUMBER) for name in (
            "data.current", "data.pages", "data.total", "data.records.keyId", "data.records.taskId",
            "data.records.createTime", "data.records.status", "data.records.finishNum")),
        *((name, MISSING) for name in (
            "msg", "data.current", "data.pages", "data.total", "data.records.taskId", "data.records.taskName",
            "data.records.createTime", "data.records.status", "data.records.finishNum")),
        ("data.records", EXCESS_RECORDS),
    ),
    GROUP_CALL_DETAIL: tuple(
        (name, kind)
        for name in ("data.numCnt", "data.callTotal", "data.success", "data.fail", "data.acd")
        for kind in (STRING_NUMBER, MISSING)
    ) + (("msg", MISSING),),
    # Flat answer, amounts documented as strings: only an absent field is drift.
    GET_BALANCE: tuple((name, MISSING) for name in ("msg", "gift", "credit")),
}


def decode_error(message: str) -> ApiError:
    return ApiError(ErrorKind.DECODE, "", message)


def number(raw: Any) -> tuple[int | float, bool]:
    """``(value, sent_as_text)`` of a JSON number or numeric string; ValueError saying why not."""
    if isinstance(raw, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(raw, int):
        value: int | float = raw
        text = False
    elif isinstance(raw, float):
        value, text = raw, False
    elif isinstance(raw, str):
        stripped = raw.strip()
        if not stripped or len(stripped) > MAX_NUMBER_TEXT or "_" in stripped:
            raise ValueError("is not a number")
        text = True
        try:
            value = int(stripped)
        except ValueError:
            try:
                exact = Decimal(stripped)
            except InvalidOperation:
                raise ValueError("is not a number") from None
            if not exact.is_finite() or abs(exact) > LIMIT:
                raise ValueError("is out of range") from None
            value = int(exact) if exact == exact.to_integral_value() else float(exact)
    else:
        raise ValueError(f"is {_json_type(raw)}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is out of range")
    if abs(value) > LIMIT:
        raise ValueError("is out of range")
    return value, text


def integer(raw: Any) -> tuple[int, bool]:
    """``(value, sent_as_text)`` of a whole number (``2``, ``"2"``, ``2.0``); ValueError saying why not."""
    value, text = number(raw)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("is not a whole number")
        value = int(value)
    return value, text


def _json_type(raw: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, (int, float)):
        return "a number"
    if isinstance(raw, str):
        return "text"
    return "a list" if isinstance(raw, list) else "an object"


class Reader:
    """Reads the fields of one answer by the rules above and notes how it deviated (:attr:`drift`)."""

    def __init__(self, endpoint: str = ""):
        self.endpoint = endpoint
        self._series = frozenset(DRIFT_SERIES.get(endpoint, ()))
        self._drift: dict[tuple[str, str], Drift] = {}
        self.envelope: Envelope | None = None

    @property
    def drift(self) -> tuple[Drift, ...]:
        """Each (field, kind) once, in the order first seen."""
        return tuple(self._drift.values())

    def note(self, field: str, kind: str, detail: str) -> None:
        field = field if (field, kind) in self._series else OTHER_FIELD
        self._drift.setdefault((field, kind), Drift(field, kind, detail))

    # -- fields ---------------------------------------------------------------------------
    def integer(self, obj: dict[str, Any], key: str, where: str, field: str) -> int:
        """A required whole number: ApiError (decode) when absent or unreadable."""
        value = self.optional_integer(obj, key, where, field, note_missing=False)
        if value is None:
            raise decode_error(f"{where}.{key} is missing")
        return value

    def optional_integer(
        self, obj: dict[str, Any], key: str, where: str, field: str, *, note_missing: bool = True
    ) -> int | None:
        """An optional whole number: None (and ``missing`` drift) when absent; ApiError when unreadable."""
        raw = obj.get(key)
        if raw is None or raw == "":
            if note_missing:
                self.note(field, MISSING, f"{where}.{key} is absent")
            return None
        try:
            value, text = integer(raw)
        except ValueError as exc:
            raise decode_error(f"{where}.{key} {exc}") from None
        if text:
            self.note(field, STRING_NUMBER, f"{where}.{key} is a number sent as text")
        return value

    def optional_number(self, obj: dict[str, Any], key: str, where: str, field: str) -> float | None:
        """An optional number (a count, a rate, seconds): None (and ``missing`` drift) when absent."""
        raw = obj.get(key)
        if raw is None or raw == "":
            self.note(field, MISSING, f"{where}.{key} is absent")
            return None
        try:
            value, text = number(raw)
        except ValueError as exc:
            raise decode_error(f"{where}.{key} {exc}") from None
        if text:
            self.note(field, STRING_NUMBER, f"{where}.{key} is a number sent as text")
        return float(value)

    # -- the envelope -----------------------------------------------------------------------
    def success_data(self, body: Any) -> dict[str, Any]:
        """``data`` of a successful answer; ApiError (api) for a non-zero code, (decode) for a bad shape."""
        envelope = self.read_envelope(body)
        if envelope.code != 0:
            raise ApiError(ErrorKind.API, str(envelope.code), envelope.message[:200])
        data = body.get("data")
        if not isinstance(data, dict):
            raise decode_error("data is not a JSON object")
        return data

    def read_envelope(self, body: Any) -> Envelope:
        if not isinstance(body, dict):
            raise decode_error("the response is not a JSON object")
        form = "code/msg" if body.get("code") is not None else "status/reason"
        raw = body.get("code") if form == "code/msg" else body.get("status")
        if raw is None:
            raise decode_error("the response has no code or status")
        try:
            code, _ = integer(raw)
        except ValueError:
            code = ENVELOPE_LIMIT + 1
        if abs(code) > ENVELOPE_LIMIT:  # vendor codes are small: anything else is not a code
            raise decode_error("the response code is not an integer")
        message = body.get("msg", body.get("reason"))
        if message is None:
            self.note("msg", MISSING, f"the response has no {form.split('/')[1]}")
        self.envelope = Envelope(code, message if isinstance(message, str) else "", form,
                                 "string" if isinstance(raw, str) else "number")
        return self.envelope


def envelope_code(body: Any) -> tuple[int, str]:
    """The vendor code and message of a decoded response body."""
    envelope = Reader().read_envelope(body)
    return envelope.code, envelope.message


# -- recallFlow/queryDetail -----------------------------------------------------------------------
def parse_flow_detail(body: Any, reader: Reader | None = None) -> FlowDetail:
    """Decode a queryDetail answer; raise ApiError (api or decode) unless it is a success."""
    reader = reader or Reader(QUERY_DETAIL)
    data = reader.success_data(body)
    status = reader.integer(data, "status", "data", "data.status")
    detail = FlowDetail(
        status=status,
        recall_interval_minutes=reader.integer(data, "recallInterval", "data", "data.recallInterval"),
        recall_num=reader.integer(data, "recallNum", "data", "data.recallNum"),
        recall_type=reader.integer(data, "recallType", "data", "data.recallType"),
        nodes=_nodes(data, reader),
    )
    try:  # documented but not used: read for its drift only, never fatal
        reader.optional_integer(data, "keyId", "data", "data.keyId")
    except ApiError:
        pass
    return detail


def _nodes(data: dict[str, Any], reader: Reader) -> tuple[NodeDetail, ...]:
    """The readable nodes of ``data.nodeList``; the others are dropped and noted."""
    raw_list = data.get("nodeList")
    if raw_list is None:
        reader.note("data.nodeList", MISSING, "data.nodeList is absent")
        return ()
    if not isinstance(raw_list, list):
        raise decode_error("data.nodeList is not a list")
    nodes: list[NodeDetail] = []
    seen: set[int] = set()
    for index, raw in enumerate(raw_list):
        where = f"data.nodeList[{index}]"
        if not isinstance(raw, dict):
            reader.note("data.nodeList", UNREADABLE_NODE, f"{where} is {_json_type(raw)}, not an object")
            continue
        try:
            node = NodeDetail(
                key_id=reader.integer(raw, "keyId", where, "data.nodeList.keyId"),
                task_id=reader.optional_integer(raw, "taskId", where, "data.nodeList.taskId"),
                script_id=reader.optional_integer(raw, "scriptId", where, "data.nodeList.scriptId"),
                status=reader.integer(raw, "nodeStatus", where, "data.nodeList.nodeStatus"),
            )
        except ApiError as error:
            reader.note(_node_field(error.message), UNREADABLE_NODE, error.message)
            continue
        if node.key_id in seen:
            reader.note("data.nodeList.keyId", UNREADABLE_NODE, f"{where}.keyId {node.key_id} appears twice")
            continue
        seen.add(node.key_id)
        nodes.append(node)
    return tuple(nodes)


def _node_field(message: str) -> str:
    """The documented field an unreadable-node message is about (``data.nodeList[3].keyId is ...``)."""
    key = message.partition("].")[2].partition(" ")[0]
    return f"data.nodeList.{key}"


# -- recallFlow/queryPage and group/call/detail ([C] on laaffic.com, inferred for api.itniotech.com) ----------
def _vendor_time(obj: dict[str, Any], key: str, where: str, zone: tzinfo, reader: Reader, field: str) -> float | None:
    """``YYYY-MM-DD HH:mm:ss`` in ``zone``, or unix time in seconds or milliseconds."""
    value = obj.get(key)
    if isinstance(value, str) and value.strip() and not value.strip().lstrip("-").isdigit():
        try:
            return datetime.strptime(value.strip(), VENDOR_TIME_FORMAT).replace(tzinfo=zone).timestamp()
        except (ValueError, OverflowError):
            raise decode_error(f"{where}.{key} is not a time like 2024-01-31 23:59:59") from None
    number_ = reader.optional_number(obj, key, where, field)
    if number_ is None:
        return None
    return number_ / 1000 if abs(number_) >= 1e11 else number_


def _text(obj: dict[str, Any], key: str, where: str, reader: Reader, field: str) -> str:
    value = obj.get(key)
    if value is None:
        reader.note(field, MISSING, f"{where}.{key} is absent")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise decode_error(f"{where}.{key} is not text")
    # JSON may carry lone surrogates; a label must be encodable text.
    return value[:MAX_TEXT].encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _objects(data: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of the list ``data[key]`` (absent or null: none), each with its place."""
    raw_list = data.get(key)
    if raw_list is None:
        return []
    if not isinstance(raw_list, list):
        raise decode_error(f"data.{key} is not a list")
    out = []
    for index, raw in enumerate(raw_list):
        where = f"data.{key}[{index}]"
        if not isinstance(raw, dict):
            raise decode_error(f"{where} is not a JSON object")
        out.append((where, raw))
    return out


def parse_flow_page(
    body: Any, zone: tzinfo = UTC, reader: Reader | None = None, size: int | None = None
) -> FlowPage:
    """Decode a recallFlow/queryPage answer; raise ApiError (api or decode) unless it is a success.

    Discovery reads the whole list or nothing, so an unreadable record fails the page. Of a page
    asked with ``size``, at most ``size`` records are read (the rest is ``excess_records`` drift)."""
    reader = reader or Reader(QUERY_PAGE)
    data = reader.success_data(body)
    entries = _objects(data, "records")
    excess = 0 if size is None else max(0, len(entries) - size)
    if excess:
        reader.note("data.records", EXCESS_RECORDS, f"{len(entries)} records on a page of size {size}: "
                    f"the first {size} were read")
        entries = entries[:size]
    records = []
    for where, raw in entries:
        key_id = reader.integer(raw, "keyId", where, "data.records.keyId")
        if key_id < 1:
            raise decode_error(f"{where}.keyId is not positive")
        records.append(
            FlowRecord(
                key_id=key_id,
                task_id=reader.optional_integer(raw, "taskId", where, "data.records.taskId"),
                task_name=_text(raw, "taskName", where, reader, "data.records.taskName"),
                created=_vendor_time(raw, "createTime", where, zone, reader, "data.records.createTime"),
                status=reader.optional_integer(raw, "status", where, "data.records.status"),
                finish_num=reader.optional_integer(raw, "finishNum", where, "data.records.finishNum"),
            )
        )
    return FlowPage(
        current=reader.optional_integer(data, "current", "data", "data.current") or 1,
        pages=reader.optional_integer(data, "pages", "data", "data.pages") or 0,
        total=reader.optional_integer(data, "total", "data", "data.total") or 0,
        records=tuple(records),
        excess=excess,
    )


def parse_call_stats(body: Any, reader: Reader | None = None) -> CallStats:
    """Decode a group/call/detail answer; raise ApiError (api or decode) unless it is a success."""
    reader = reader or Reader(GROUP_CALL_DETAIL)
    data = reader.success_data(body)
    return CallStats(
        numbers=reader.optional_number(data, "numCnt", "data", "data.numCnt"),
        calls=reader.optional_number(data, "callTotal", "data", "data.callTotal"),
        succeeded=reader.optional_number(data, "success", "data", "data.success"),
        failed=reader.optional_number(data, "fail", "data", "data.fail"),
        acd_seconds=reader.optional_number(data, "acd", "data", "data.acd"),
    )


# -- getBalance ([C] on the vendor's Account pages) -------------------------------------------------
def parse_balance(body: Any, reader: Reader | None = None) -> Balance:
    """Decode a getBalance answer (flat: the amounts sit beside ``status``); ApiError unless a success."""
    reader = reader or Reader(GET_BALANCE)
    envelope = reader.read_envelope(body)
    if envelope.code != 0:
        raise ApiError(ErrorKind.API, str(envelope.code), envelope.message[:200])
    amounts = []
    for kind, key in BALANCE_KINDS:
        raw = body.get(key)
        if raw is None or raw == "":
            if key == "balance":
                raise decode_error("balance is missing")
            reader.note(key, MISSING, f"{key} is absent")
            continue
        try:
            value, _ = number(raw)  # documented as a string: text is not drift here
        except ValueError as exc:
            raise decode_error(f"{key} {exc}") from None
        amounts.append((kind, float(value)))
    return Balance(tuple(amounts))
