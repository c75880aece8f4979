"""Decoding the vendor's answers (exporter/itnio/decoding.py): every envelope variant, one set of number
rules for every field, unreadable nodes dropped and counted as drift, and wrong shapes that raise ApiError
and nothing else. (Fuzzed in tests/integration/test_hostile_input.py.)"""

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.itnio.decoding import Reader, parse_balance, parse_call_stats, parse_flow_detail, parse_flow_page
from exporter.itnio.endpoints import GET_BALANCE, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from exporter.itnio.errors import ApiError, ErrorKind
from exporter.itnio.model import FlowDetail, NodeDetail
from tests.helpers import BIG, MISSING, base_body, mutated, roundtrip


@pytest.mark.parametrize(
    "body, code",
    [
        ({"code": -16, "msg": "Timestamp expired"}, "-16"),
        ({"code": "-1", "msg": "Authentication error"}, "-1"),
        ({"status": "-2", "reason": "Restricted IP access"}, "-2"),
        ({"status": -22, "reason": "Parameter exception"}, "-22"),
        ({"status": "-24", "reason": "x", "data": {"status": 0}}, "-24"),
    ],
)
def test_non_zero_codes_in_every_variant_are_api_errors(body, code):
    with pytest.raises(ApiError) as info:
        parse_flow_detail(body)
    assert (info.value.kind, info.value.code) == (ErrorKind.API, code)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"msg": "no code"},
        {"code": "zero"},
        {"code": True},
        {"code": 0},
        {"code": 0, "data": []},
        {"code": 0, "data": {"status": "one", "recallInterval": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"status": 1.5, "recallInterval": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"recallInterval": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0, "nodeList": {}}},
    ],
)
def test_wrong_shapes_are_decode_errors(body):
    with pytest.raises(ApiError) as info:
        parse_flow_detail(body)
    assert info.value.kind is ErrorKind.DECODE


def test_optional_ids_may_be_null_and_nodelist_absent():
    detail = parse_flow_detail(
        {"code": "0", "data": {"status": 2, "recallInterval": 3, "recallNum": 2, "recallType": 0,
                               "nodeList": [{"keyId": 5, "taskId": None, "nodeStatus": 2, "scriptId": None}]}}
    )
    assert detail.nodes[0].task_id is None and detail.recall_type_name == "all"
    assert parse_flow_detail({"code": 0, "data": {"status": 0, "recallInterval": 1, "recallNum": 1,
                                                  "recallType": 1}}).nodes == ()


def test_a_page_decodes_loose_numbers_and_vendor_times_strictly():
    zone = ZoneInfo("Asia/Shanghai")
    body = {"status": "0", "reason": "success", "data": {"total": "2", "pages": 1, "current": 1, "size": 100, "records": [
        {"keyId": "7", "taskId": 70, "taskName": "promo", "createTime": "2024-03-01 08:00:00", "finishNum": "2", "status": 1},
        {"keyId": 8, "createTime": 1709251200000},
    ]}}
    page = parse_flow_page(body, zone)
    first, second = page.records
    assert (first.key_id, first.task_id, first.task_name, first.finish_num, first.status) == (7, 70, "promo", 2, 1)
    assert first.created == datetime(2024, 3, 1, 8, tzinfo=zone).timestamp() == 1709251200
    assert second.created == 1709251200 and second.task_name == "" and second.task_id is None
    assert (page.total, page.pages) == (2, 1)
    for bad in ({"keyId": "x"}, {"keyId": 1.5}, {"taskId": 1}, {"keyId": True}, {"keyId": -3}, {"keyId": "３"}):
        with pytest.raises(ApiError) as info:
            parse_flow_page({"code": 0, "data": {"records": [bad]}})
        assert info.value.kind is ErrorKind.DECODE
    with pytest.raises(ApiError) as info:
        parse_flow_page({"code": "-22", "msg": "Parameter exception"})
    assert (info.value.kind, info.value.code) == (ErrorKind.API, "-22")
    with pytest.raises(ApiError):
        parse_flow_page({"code": 0, "data": {"records": {}}})


def test_a_page_with_more_records_than_asked_for_is_read_up_to_the_size_and_counted_as_drift():
    records = [{"keyId": key} for key in range(1, 6)] + [{"keyId": "unreadable beyond the size"}]
    reader = Reader(QUERY_PAGE)
    page = parse_flow_page({"code": 0, "data": {"total": 6, "records": records}}, reader=reader, size=2)
    assert [r.key_id for r in page.records] == [1, 2] and page.excess == 4
    assert [(d.field, d.kind) for d in reader.drift if d.kind == "excess_records"] == [("data.records", "excess_records")]
    exact = parse_flow_page({"code": 0, "data": {"records": records[:2]}}, reader=(fine := Reader(QUERY_PAGE)), size=2)
    assert exact.excess == 0 and not [d for d in fine.drift if d.kind == "excess_records"]


def test_call_stats_accept_numbers_or_numeric_strings_and_nothing_else():
    stats = parse_call_stats({"code": 0, "data": {"numCnt": "10", "callTotal": 12, "success": "8", "fail": 4, "acd": "37.5"}})
    assert (stats.numbers, stats.calls, stats.succeeded, stats.failed, stats.acd_seconds) == (10, 12, 8, 4, 37.5)
    assert parse_call_stats({"code": 0, "data": {}}).calls is None
    for bad in ({"callTotal": "many"}, {"acd": float("inf")}, {"success": True}, {"fail": {}}, {"fail": -1},
                {"numCnt": "１０"}, {"acd": "1e3"}):
        reader = Reader(GROUP_CALL_DETAIL)
        stats = parse_call_stats({"code": 0, "msg": "ok", "data": {"numCnt": 10, "callTotal": 12, "success": 8, "fail": 4,
                                                      "acd": 37.5, **bad}}, reader)
        values = {"numCnt": stats.numbers, "callTotal": stats.calls, "success": stats.succeeded,
                  "fail": stats.failed, "acd": stats.acd_seconds}
        (key,) = bad
        assert values.pop(key) is None and None not in values.values()  # that count only is lost
        assert [(d.field, d.kind) for d in reader.drift] == [(f"data.{key}", "unreadable")]


# Unreadable as a whole number: fractions, non-finite, booleans, containers, text that is no number, out of range.
# Not ASCII decimal (other scripts' digits, exponents, signs), negative (no number in data may be), or a
# negative zero written as text.
WRONG_FOR_INT = [1.5, "1.5", math.nan, math.inf, -math.inf, "NaN", "inf", True, False, [], [1], {}, {"v": 1}, "one",
                 "1_000", "0x10", "9" * 41, 2**70, -(2**70), BIG + 1, str(BIG + 1),
                 "５", "١", "1e0", "1e3", "+1", "-1", -1, -5, -100, -1.0, "-0", "12abc", "1.", ".5", "1 2", "\u00a01"]
# Read as the whole number 1: a JSON number or ASCII decimal text, the same rules on every field.
READ_AS_ONE = [1, 1.0, "1", " 1 ", "1.0", "01", "1.000000", 1e0]
FLOW_INTS = [("data", "status"), ("data", "recallInterval"), ("data", "recallNum"), ("data", "recallType")]
FLOW_OPTIONAL = FLOW_INTS[1:]
NODE_REQUIRED = [("node", "keyId"), ("node", "nodeStatus")]
NODE_OPTIONAL = [("node", "taskId"), ("node", "scriptId")]


@pytest.mark.parametrize("new", [*WRONG_FOR_INT, "", None, MISSING], ids=repr)
def test_a_flow_status_that_cannot_be_read_is_decode(new):
    for body in (mutated("data", "status", new), roundtrip(mutated("data", "status", new)) if new is not MISSING else None):
        if body is None:
            continue
        with pytest.raises(ApiError) as info:
            parse_flow_detail(body)
        assert info.value.kind is ErrorKind.DECODE and info.value.code == ""
        assert "status" in info.value.message


@pytest.mark.parametrize("new", [*WRONG_FOR_INT, "", None, MISSING], ids=repr)
@pytest.mark.parametrize("where, field", FLOW_OPTIONAL)
def test_a_flow_setting_that_cannot_be_read_costs_that_setting_only(where, field, new):
    reader = Reader(QUERY_DETAIL)
    body = mutated(where, field, new)
    detail = parse_flow_detail(roundtrip(body) if new is not MISSING else body, reader)
    attribute = {"recallInterval": "recall_interval_minutes", "recallNum": "recall_num", "recallType": "recall_type"}[field]
    assert getattr(detail, attribute) is None
    assert detail.status == 1 and len(detail.nodes) == 2  # the flow keeps its state and nodes
    kind = "missing" if new in (None, MISSING, "") else "unreadable"
    assert [d.kind for d in reader.drift if d.field == f"data.{field}"] == [kind]


@pytest.mark.parametrize("new", [*WRONG_FOR_INT, None, MISSING], ids=repr)
@pytest.mark.parametrize("where, field", NODE_REQUIRED)
def test_a_node_that_cannot_be_read_is_dropped_and_the_flow_kept(where, field, new):
    reader = Reader(QUERY_DETAIL)
    body = mutated(where, field, new)
    detail = parse_flow_detail(roundtrip(body) if new is not MISSING else body, reader)
    assert detail.nodes == (NodeDetail(10, 700, 100, 2),)
    assert (detail.status, detail.recall_num) == (1, 3)
    unreadable = [d for d in reader.drift if d.kind == "unreadable_node"]
    assert [d.field for d in unreadable] == [f"data.nodeList.{field}"], reader.drift
    assert "data.nodeList[1]" in unreadable[0].detail


@pytest.mark.parametrize("new", READ_AS_ONE, ids=repr)
@pytest.mark.parametrize("where, field", FLOW_INTS + NODE_REQUIRED + NODE_OPTIONAL)
def test_every_int_field_reads_a_number_or_numeric_text_alike(where, field, new):
    reader = Reader(QUERY_DETAIL)
    detail = parse_flow_detail(roundtrip(mutated(where, field, new)), reader)
    got = getattr(detail if where == "data" else detail.nodes[1], {
        "status": "status", "recallInterval": "recall_interval_minutes", "recallNum": "recall_num",
        "recallType": "recall_type", "keyId": "key_id", "nodeStatus": "status", "taskId": "task_id",
        "scriptId": "script_id"}[field])
    assert got == 1 and type(got) is int
    path = f"data.{field}" if where == "data" else f"data.nodeList.{field}"
    as_text = [d for d in reader.drift if d.kind == "string_number"]
    assert [d.field for d in as_text] == ([path] if isinstance(new, str) else [])
    assert len(detail.nodes) == 2


@pytest.mark.parametrize("new", [None, MISSING, "", *WRONG_FOR_INT], ids=repr)
@pytest.mark.parametrize("where, field", NODE_OPTIONAL)
def test_an_optional_node_id_absent_or_unreadable_costs_that_id_only(where, field, new):
    reader = Reader(QUERY_DETAIL)
    detail = parse_flow_detail(mutated(where, field, new), reader)
    node = detail.nodes[1]
    assert getattr(node, {"taskId": "task_id", "scriptId": "script_id"}[field]) is None
    assert (node.key_id, node.status) == (11, 1)
    assert detail.nodes[0] == NodeDetail(10, 700, 100, 2)
    kind = "missing" if new in (None, MISSING, "") else "unreadable"
    assert [d.kind for d in reader.drift if d.field == f"data.nodeList.{field}"] == [kind]


@pytest.mark.parametrize("new, nodes", [(None, 0), (MISSING, 0), ([], 0)], ids=["null", "absent", "empty"])
def test_node_list_may_be_null_absent_or_empty(new, nodes):
    detail = parse_flow_detail(mutated("data", "nodeList", new))
    assert detail == FlowDetail(1, 5, 3, 1, ())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b["data"].__setitem__("nodeList", "10,11"),
        lambda b: b["data"].__setitem__("nodeList", ""),
        lambda b: b["data"].__setitem__("nodeList", 0),
        lambda b: b["data"].__setitem__("nodeList", False),
        lambda b: b["data"].__setitem__("nodeList", {"keyId": 10, "nodeStatus": 1}),
        lambda b: b["data"].__setitem__("nodeList", 2),
        lambda b: b["data"].__setitem__("nodeList", True),
        lambda b: b.__setitem__("data", None),
        lambda b: b.__setitem__("data", []),
        lambda b: b.__setitem__("data", "{}"),
        lambda b: b.pop("data"),
        lambda b: b.pop("code"),
        lambda b: b.__setitem__("code", None),
        lambda b: b.__setitem__("code", True),
        lambda b: b.__setitem__("code", "zero"),
        lambda b: b.__setitem__("code", ""),
        lambda b: b.__setitem__("code", 0.5),
        lambda b: b.__setitem__("code", math.nan),
        lambda b: b.__setitem__("code", math.inf),
        lambda b: b.__setitem__("code", []),
        lambda b: b.__setitem__("code", {"value": 0}),
        lambda b: b.__setitem__("code", 2**40),
        lambda b: b.__setitem__("code", "9" * 5000),  # beyond int()'s digit limit
    ],
)
def test_wrong_shapes_are_decode(mutate):
    body = base_body()
    mutate(body)
    with pytest.raises(ApiError) as info:
        parse_flow_detail(roundtrip(body))
    assert info.value.kind is ErrorKind.DECODE and info.value.code == ""


@pytest.mark.parametrize(
    "entry, field",
    [(None, "data.nodeList"), ([12, 1], "data.nodeList"), ("node", "data.nodeList"), (7, "data.nodeList"),
     ({"keyId": 10, "nodeStatus": 0}, "data.nodeList.keyId")],  # the last repeats keyId 10
    ids=["null", "list", "text", "number", "keyId-twice"],
)
def test_entries_that_are_not_objects_or_repeat_a_key_are_dropped(entry, field):
    body = base_body()
    body["data"]["nodeList"].append(entry)
    reader = Reader(QUERY_DETAIL)
    detail = parse_flow_detail(roundtrip(body), reader)
    assert detail.nodes == (NodeDetail(10, 700, 100, 2), NodeDetail(11, 701, 100, 1))
    unreadable = [d for d in reader.drift if d.kind == "unreadable_node"]
    assert [d.field for d in unreadable] == [field]
    assert "data.nodeList[2]" in unreadable[0].detail


@pytest.mark.parametrize("body", [None, True, 0, 1.5, math.nan, "", "{}", [], [base_body()]], ids=repr)
def test_a_top_level_that_is_not_an_object_is_decode(body):
    with pytest.raises(ApiError) as info:
        parse_flow_detail(body)
    assert info.value.kind is ErrorKind.DECODE


@pytest.mark.parametrize(
    "envelope, code, message",
    [
        ({"code": 7, "msg": "x"}, "7", "x"),
        ({"code": "-16", "msg": "Timestamp expired"}, "-16", "Timestamp expired"),
        ({"code": -1.0}, "-1", ""),
        ({"code": " 42 ", "msg": 5}, "42", ""),
        ({"status": 2**31, "reason": "r" * 500}, str(2**31), "r" * 200 + "…[cut 300 chars]"),
        ({"status": -(2**31), "reason": "\u202e🙂\x00"}, str(-(2**31)), "\u202e🙂\x00"),
    ],
)
def test_non_zero_envelope_codes_are_api_errors_even_with_valid_data(envelope, code, message):
    body = {**envelope, "data": base_body()["data"]}
    with pytest.raises(ApiError) as info:
        parse_flow_detail(roundtrip(body))
    assert (info.value.kind, info.value.code, info.value.message) == (ErrorKind.API, code, message)


def test_the_int_range_bounds_are_exact():
    assert parse_flow_detail(mutated("data", "recallNum", BIG)).recall_num == BIG
    reader = Reader(QUERY_DETAIL)
    assert parse_flow_detail(mutated("data", "recallNum", BIG + 1), reader).recall_num is None
    assert "out of range" in reader.drift[0].detail
    with pytest.raises(ApiError, match="out of range"):
        parse_flow_detail(mutated("data", "status", BIG + 1))


@pytest.mark.parametrize("count, value", [("recallNum", -5), ("recallInterval", -100), ("recallNum", "-5"),
                                          ("recallInterval", "５"), ("recallNum", "12abc"), ("recallNum", "1e3")])
def test_negative_counts_and_non_ascii_digits_are_unreadable_not_exported(count, value):
    reader = Reader(QUERY_DETAIL)
    detail = parse_flow_detail(roundtrip(mutated("data", count, value)), reader)
    assert (detail.recall_num if count == "recallNum" else detail.recall_interval_minutes) is None
    assert [d.kind for d in reader.drift if d.field == f"data.{count}"] == ["unreadable"]


def test_a_json_exponent_is_a_json_number_but_text_must_be_plain_decimal():
    assert parse_flow_detail(roundtrip(mutated("data", "recallNum", 1e3))).recall_num == 1000  # JSON's own syntax
    assert parse_flow_detail(roundtrip(mutated("data", "recallNum", "1e3"))).recall_num is None


@pytest.mark.parametrize("code", ["-１", "１", "-1e0", "--1", True])
def test_an_envelope_code_in_other_digits_is_no_code(code):
    with pytest.raises(ApiError) as info:
        parse_flow_detail({"code": code, "msg": "x", "data": base_body()["data"]})
    assert info.value.kind is ErrorKind.DECODE


def test_a_long_msg_is_capped_marked_and_counted_as_too_long():
    reader = Reader(QUERY_DETAIL)
    body = {**base_body(), "msg": "<b>" + "m" * 7_000_000}
    detail = parse_flow_detail(body, reader)
    assert detail.nodes and reader.envelope is not None
    message = reader.envelope.message
    assert len(message) < 4200 and message.startswith("<b>mmm") and message.endswith("…[cut 6995907 chars]")
    assert [(d.field, d.detail) for d in reader.drift if d.kind == "too_long"] == [
        ("msg", "msg has 7000003 characters, kept 4096")]
    short = Reader(QUERY_DETAIL)
    parse_flow_detail({**base_body(), "msg": "m" * 4096}, short)
    assert short.envelope is not None and short.envelope.message == "m" * 4096
    assert "too_long" not in {d.kind for d in short.drift}


def test_a_long_task_name_is_capped_as_a_label_value():
    reader = Reader(QUERY_PAGE)
    page = parse_flow_page({"code": 0, "data": {"records": [{"keyId": 1, "taskName": "t" * 100_000}]}}, reader=reader)
    name = page.records[0].task_name
    assert name.startswith("t" * 256) and name.endswith("…[cut 99744 chars]") and len(name) < 300
    assert ("data.records.taskName", "too_long") in [(d.field, d.kind) for d in reader.drift]


def test_page_fields_that_cannot_be_read_cost_that_field_only():
    reader = Reader(QUERY_PAGE)
    page = parse_flow_page({"code": 0, "msg": "ok", "data": {"total": "-1", "records": [
        {"keyId": 7, "taskId": "７０", "finishNum": -2, "status": 1.5, "createTime": -5},
        {"keyId": 8, "createTime": "yesterday"}, {"keyId": 9, "createTime": "２０２４-03-01 08:00:00"}]}}, reader=reader)
    record = page.records[0]
    assert record.key_id == 7 and (record.task_id, record.finish_num, record.status, record.created) == (None,) * 4
    assert [r.created for r in page.records[1:]] == [None, None]
    unreadable = {d.field for d in reader.drift if d.kind == "unreadable"}
    assert unreadable == {"data.total", "data.records.taskId", "data.records.finishNum", "data.records.status",
                          "data.records.createTime"}


def test_every_drift_a_reader_notes_is_a_pre_initialised_series():
    from exporter.itnio.decoding import DRIFT_SERIES
    from exporter.metrics.catalogue import API_SCHEMA_DRIFT
    for series in DRIFT_SERIES.values():  # every kind is one the metric's help explains
        assert all(f"{kind} (" in API_SCHEMA_DRIFT.help for _, kind in series), series
    assert ("msg", "too_long") in DRIFT_SERIES[QUERY_DETAIL] and ("data.recallNum", "unreadable") in DRIFT_SERIES[QUERY_DETAIL]


def test_deep_nesting_inside_an_unknown_field_is_ignored():
    body = base_body()
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    body["data"]["extra"] = deep
    body["data"]["nodeList"][0]["extra"] = {"a": deep}
    assert parse_flow_detail(body).nodes[0] == NodeDetail(10, 700, 100, 2)


# -- getBalance: flat, amounts documented as strings -----------------------------------------------
DOCUMENTED_BALANCE = {"status": "0", "reason": "success", "balance": "99.990000", "gift": "50.00000", "credit": "0"}


def read_balance(body: Any) -> tuple[Any, Reader]:
    reader = Reader(GET_BALANCE)
    return parse_balance(body, reader), reader


def test_the_documented_balance_answer_reads_as_three_amounts_without_drift():
    balance, reader = read_balance(DOCUMENTED_BALANCE)
    assert balance.amounts == (("actual", 99.99), ("gift", 50.0), ("credit", 0.0))
    assert balance.available == pytest.approx(149.99)
    assert reader.drift == (), "strings are what the vendor documents here: not drift"
    assert reader.envelope is not None and (reader.envelope.form, reader.envelope.code_type) == ("status/reason", "string")


def test_balance_amounts_as_numbers_or_padded_text_read_alike():
    loose = {"status": 0, "reason": "success", "balance": 12.5, "gift": " 3 ", "credit": -4}
    balance, reader = read_balance(loose)
    assert balance.amounts == (("actual", 12.5), ("gift", 3.0), ("credit", -4.0))
    overdrawn, _ = read_balance({**DOCUMENTED_BALANCE, "balance": "-5.50"})  # an amount may be negative
    assert overdrawn.amount("actual") == -5.5
    assert reader.drift == ()


def test_an_absent_gift_or_credit_is_missing_drift_and_has_no_amount():
    body = {key: value for key, value in DOCUMENTED_BALANCE.items() if key not in ("credit", "reason")}
    body["gift"] = None
    balance, reader = read_balance(body)
    assert balance.amounts == (("actual", 99.99),)
    assert balance.amount("gift") is None
    assert {(d.field, d.kind) for d in reader.drift} == {("gift", "missing"), ("credit", "missing"), ("msg", "missing")}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"balance": None}, "balance is missing"),
        ({"balance": "lots"}, "balance is not a number"),
        ({"gift": True}, "gift is a boolean"),
        ({"credit": {"amount": 1}}, "credit is an object"),
        ({"balance": "NaN"}, "balance is not a number"),
        ({"balance": "９９.５"}, "balance is not a number"),
        ({"balance": "1e3"}, "balance is not a number"),
        ({"balance": math.inf}, "balance is out of range"),
    ],
)
def test_an_unreadable_balance_is_a_decode_error(change, message):
    with pytest.raises(ApiError) as info:
        read_balance({**DOCUMENTED_BALANCE, **change})
    assert info.value.kind is ErrorKind.DECODE and info.value.message.startswith(message)


@pytest.mark.parametrize("code", ["-1", "-2", "-13", "-16", "-18"])
def test_balance_codes_are_api_errors_and_the_account_ones_say_so(code):
    with pytest.raises(ApiError) as info:
        read_balance({"status": code, "reason": "x"})
    assert (info.value.kind, info.value.code) == (ErrorKind.API, code)
    assert info.value.is_account_error() is (code in ("-1", "-2", "-13"))


def test_a_balance_wrapped_in_data_is_not_read_as_a_balance():
    with pytest.raises(ApiError) as info:
        read_balance({"status": "0", "reason": "success", "data": {"balance": "1"}})
    assert info.value.kind is ErrorKind.DECODE
