"""Decoding the vendor's answers into :mod:`~exporter.itnio.model` values: one set of rules for every endpoint.

The vendor's pages contradict themselves, so decoding is tolerant where the vendor has
been seen to vary, and strict where a value could only be guessed. The rules (the
user-facing version is in docs/, "How answers are decoded"):

- **Envelope.** ``code``/``msg`` or ``status``/``reason``; the code a JSON number or a
  numeric string (both are documented). Any non-zero code is a failure (kind ``api``).
  ``data.status`` is the flow state, never the envelope status.
- **Numbers.** Every documented numeric field accepts a JSON number or ASCII decimal text:
  ``2``, ``"2"``, ``" 2 "``, ``2.0``, ``"2.0"``. Text is ASCII digits with an optional
  fraction, nothing else: no exponent (``"1e3"``), no other script's digits (``"５"``), no
  ``_``, no sign. Only the envelope code and the balance amounts may be negative (with a
  leading ``-`` or ``+`` in text); every number in ``data`` (ids, states, counts) is
  ``>= 0``. An integer field rejects ``2.5``; every field rejects booleans, objects, lists,
  ``NaN``/``Infinity``; every number must lie within ±2**63. A number sent as text where
  the vendor documents a number is used, and counted as drift (``string_number``).
- **What a bad value costs.** A required field (``data.status``; a node's ``keyId`` and
  ``nodeStatus``; a list record's ``keyId``) that is absent or unreadable fails the answer
  (kind ``decode``), or drops the node (``unreadable_node``). An optional field that is
  absent (``null`` counts as absent) is ``missing`` drift, one that is unreadable is
  ``unreadable`` drift; either way only that field is lost (None), and the flow, node or
  record keeps the rest.
- **Text.** Every vendor string kept is capped (:func:`exporter.text.cap`): ``msg`` at
  :data:`~exporter.text.MAX_TEXT` characters, ``taskName`` (a label value) at
  :data:`MAX_NAME`; a cut string ends with a visible mark and is ``too_long`` drift. So
  everything downstream (snapshot, pages, JSON, logs) only ever holds capped text.
- **Unknown fields** are ignored.
- **Nodes.** A ``nodeList`` entry that is not an object, lacks a readable ``keyId`` or
  ``nodeStatus``, or repeats a ``keyId`` seen before in the same answer, is dropped and
  counted as drift (``unreadable_node``); the flow keeps its other nodes. What fails a
  whole queryDetail answer is the envelope, ``data`` not being an object, ``nodeList``
  not being a list, or ``data.status`` absent or unreadable.
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
import re
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from ..text import MAX_TEXT, cap
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

MAX_NAME = 256  # characters of a task name kept: it is a label value (the vendor's other text: exporter.text.MAX_TEXT)
MAX_ERROR_TEXT = 200  # characters of a vendor message kept in the error of a failed answer
MAX_NUMBER_TEXT = 40  # longer numeric strings are not numbers worth reading (nor worth the parsing time)
LIMIT = 2**63
ENVELOPE_LIMIT = 2**31

# Drift kinds (the `kind` label of itnio_api_schema_drift_total).
STRING_NUMBER = "string_number"
MISSING = "missing"
UNREADABLE = "unreadable"
UNREADABLE_NODE = "unreadable_node"
TOO_LONG = "too_long"
EXCESS_RECORDS = "excess_records"
OTHER_FIELD = "other"

# Every (field, kind) of drift each endpoint can show: the documented fields and what can happen to them.
# The `field` label takes these values or `other`; the series are pre-initialised for the endpoints in use.
_NODE_FIELDS = ("data.nodeList.keyId", "data.nodeList.nodeStatus", "data.nodeList.taskId", "data.nodeList.scriptId")
_NODE_OPTIONAL = ("data.nodeList.taskId", "data.nodeList.scriptId")
_FLOW_OPTIONAL = ("data.keyId", "data.recallInterval", "data.recallNum", "data.recallType")
_RECORD_OPTIONAL = ("data.current", "data.pages", "data.total", "data.records.taskId", "data.records.createTime",
                    "data.records.status", "data.records.finishNum")
_CALL_FIELDS = ("data.numCnt", "data.callTotal", "data.success", "data.fail", "data.acd")
DRIFT_SERIES: dict[str, tuple[tuple[str, str], ...]] = {
    QUERY_DETAIL: (
        *((name, STRING_NUMBER) for name in ("data.status", *_FLOW_OPTIONAL, *_NODE_FIELDS)),
        *((name, MISSING) for name in ("msg", *_FLOW_OPTIONAL, "data.nodeList", *_NODE_OPTIONAL)),
        *((name, UNREADABLE) for name in (*_FLOW_OPTIONAL, *_NODE_OPTIONAL)),
        *((name, UNREADABLE_NODE) for name in ("data.nodeList", "data.nodeList.keyId", "data.nodeList.nodeStatus")),
        ("msg", TOO_LONG),
    ),
    QUERY_PAGE: (
        *((name, STRING_NUMBER) for name in ("data.records.keyId", *_RECORD_OPTIONAL)),
        *((name, MISSING) for name in ("msg", *_RECORD_OPTIONAL, "data.records.taskName")),
        *((name, UNREADABLE) for name in _RECORD_OPTIONAL),
        *((name, TOO_LONG) for name in ("msg", "data.records.taskName")),
        ("data.records", EXCESS_RECORDS),
    ),
    GROUP_CALL_DETAIL: tuple(
        (name, kind) for name in _CALL_FIELDS for kind in (STRING_NUMBER, MISSING, UNREADABLE)
    ) + (("msg", MISSING), ("msg", TOO_LONG)),
    # Flat answer, amounts documented as strings: only an absent field or a long msg is drift.
    GET_BALANCE: (*((name, MISSING) for name in ("msg", "gift", "credit")), ("msg", TOO_LONG)),
}


def decode_error(message: str) -> ApiError:
    return ApiError(ErrorKind.DECODE, "", message)


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SIGNED_DECIMAL = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


def number(raw: Any, *, signed: bool = False) -> tuple[int | float, bool]:
    """``(value, sent_as_text)`` of a JSON number or ASCII decimal text; ValueError saying why not.

    Negative values (and a sign in text) only when ``signed``."""
    if isinstance(raw, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(raw, int):
        value: int | float = raw
        text = False
    elif isinstance(raw, float):
        value, text = raw, False
    elif isinstance(raw, str):
        stripped = raw.strip(" \t")
        if len(stripped) > MAX_NUMBER_TEXT or not (_SIGNED_DECIMAL if signed else _DECIMAL).fullmatch(stripped):
            raise ValueError("is not a number in ASCII decimal")
        text = True
        exact = Decimal(stripped)
        if abs(exact) > LIMIT:
            raise ValueError("is out of range")
        value = int(exact) if exact == exact.to_integral_value() else float(exact)
    else:
        raise ValueError(f"is {_json_type(raw)}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("is out of range")
    if abs(value) > LIMIT:
        raise ValueError("is out of range")
    if value < 0 and not signed:
        raise ValueError("is negative")
    return value, text


def integer(raw: Any, *, signed: bool = False) -> tuple[int, bool]:
    """``(value, sent_as_text)`` of a whole number (``2``, ``"2"``, ``2.0``); ValueError saying why not."""
    value, text = number(raw, signed=signed)
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
        raw = obj.get(key)
        if raw is None or raw == "":
            raise decode_error(f"{where}.{key} is missing")
        try:
            value, text = integer(raw)
        except ValueError as exc:
            raise decode_error(f"{where}.{key} {exc}") from None
        if text:
            self.note(field, STRING_NUMBER, f"{where}.{key} is a number sent as text")
        return value

    def optional_integer(self, obj: dict[str, Any], key: str, where: str, field: str) -> int | None:
        """An optional whole number: None when absent (``missing`` drift) or unreadable (``unreadable`` drift)."""
        value = self.optional_number(obj, key, where, field, whole=True)
        return None if value is None else int(value)

    def optional_number(
        self, obj: dict[str, Any], key: str, where: str, field: str, *, whole: bool = False
    ) -> int | float | None:
        """An optional number (a count, a rate, seconds): None when absent (``missing`` drift) or
        unreadable (``unreadable`` drift): a bad value costs that field only."""
        raw = obj.get(key)
        if raw is None or raw == "":
            self.note(field, MISSING, f"{where}.{key} is absent")
            return None
        try:
            value, text = integer(raw) if whole else number(raw)
        except ValueError as exc:
            self.note(field, UNREADABLE, f"{where}.{key} {exc}")
            return None
        if text:
            self.note(field, STRING_NUMBER, f"{where}.{key} is a number sent as text")
        return value if whole else float(value)

    def text(self, raw: str, limit: int, field: str, where: str) -> str:
        """``raw`` capped at ``limit`` characters (the cut marked, and ``too_long`` drift)."""
        if len(raw) > limit:
            self.note(field, TOO_LONG, f"{where} has {len(raw)} characters, kept {limit}")
        return cap(raw, limit)

    # -- the envelope -----------------------------------------------------------------------
    def success_data(self, body: Any) -> dict[str, Any]:
        """``data`` of a successful answer; ApiError (api) for a non-zero code, (decode) for a bad shape."""
        envelope = self.read_envelope(body)
        if envelope.code != 0:
            raise ApiError(ErrorKind.API, str(envelope.code), cap(envelope.message, MAX_ERROR_TEXT))
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
            code, _ = integer(raw, signed=True)
        except ValueError:
            code = ENVELOPE_LIMIT + 1
        if abs(code) > ENVELOPE_LIMIT:  # vendor codes are small: anything else is not a code
            raise decode_error("the response code is not an integer")
        message = body.get("msg", body.get("reason"))
        if message is None:
            self.note("msg", MISSING, f"the response has no {form.split('/')[1]}")
        field = form.split("/")[1]
        message = self.text(message, MAX_TEXT, "msg", field) if isinstance(message, str) else ""
        self.envelope = Envelope(code, message, form,
                                 "string" if isinstance(raw, str) else "number")
        return self.envelope


# -- recallFlow/queryDetail -----------------------------------------------------------------------
def parse_flow_detail(body: Any, reader: Reader | None = None) -> FlowDetail:
    """Decode a queryDetail answer; raise ApiError (api or decode) unless it is a success."""
    reader = reader or Reader(QUERY_DETAIL)
    data = reader.success_data(body)
    status = reader.integer(data, "status", "data", "data.status")
    detail = FlowDetail(
        status=status,
        recall_interval_minutes=reader.optional_integer(data, "recallInterval", "data", "data.recallInterval"),
        recall_num=reader.optional_integer(data, "recallNum", "data", "data.recallNum"),
        recall_type=reader.optional_integer(data, "recallType", "data", "data.recallType"),
        nodes=_nodes(data, reader),
    )
    reader.optional_integer(data, "keyId", "data", "data.keyId")  # documented but not used: read for its drift
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
            if not value.isascii():  # strptime, like int(), reads any script's digits
                raise ValueError(value)
            return datetime.strptime(value.strip(), VENDOR_TIME_FORMAT).replace(tzinfo=zone).timestamp()
        except (ValueError, OverflowError):
            reader.note(field, UNREADABLE, f"{where}.{key} is not a time like 2024-01-31 23:59:59")
            return None
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
    return reader.text(value, MAX_NAME, field, f"{where}.{key}").encode("utf-16", "surrogatepass").decode("utf-16", "replace")


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
        raise ApiError(ErrorKind.API, str(envelope.code), cap(envelope.message, MAX_ERROR_TEXT))
    amounts = []
    for kind, key in BALANCE_KINDS:
        raw = body.get(key)
        if raw is None or raw == "":
            if key == "balance":
                raise decode_error("balance is missing")
            reader.note(key, MISSING, f"{key} is absent")
            continue
        try:
            value, _ = number(raw, signed=True)  # documented as a string: text is not drift here
        except ValueError as exc:
            raise decode_error(f"{key} {exc}") from None
        amounts.append((kind, float(value)))
    return Balance(tuple(amounts))
