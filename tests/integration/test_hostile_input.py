"""Hostile input, fuzzed: any JSON value decodes or raises ApiError, and hostile answers go through
the whole pipeline (a real server answering hostile bytes, the real client, poller and exposition).
The poller never raises out of a cycle, a wrong shape is counted once as ``decode``, and /metrics
always parses (both formats) and passes ``promtool check metrics``. The decoder's hand-picked cases
are in tests/itnio/test_decoding.py.

Hypothesis runs derandomized and without an example database, so every run (and CI) sees the
same examples and nothing is written to the working tree.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.config import (
    Credentials,
    validate_config,
)
from exporter.itnio.client import ItnioClient
from exporter.itnio.decoding import parse_call_stats, parse_flow_detail, parse_flow_page
from exporter.itnio.endpoints import QUERY_DETAIL
from exporter.itnio.errors import ApiError, ErrorKind
from exporter.itnio.model import FlowDetail, NodeDetail
from exporter.metrics.exposition import Exposition, RenderedSnapshot
from exporter.metrics.telemetry import Telemetry, code_label
from exporter.polling.poller import Poller
from exporter.polling.snapshot import FlowState, Snapshot
from tests.conftest import parse_samples, require_tool, serve, value
from tests.helpers import BIG, mutated, roundtrip


def hostile_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------------------------------------
# Strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([BIG, BIG + 1, -BIG, -BIG - 1, 2**70, -(2**70), 0, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 1e300])
    | st.text(max_size=20)
    | st.sampled_from(["0", " 0 ", "-16", "NaN", "1e3", "٠", "\u202e", "🙂", "\x00", '"\\\n'])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
# Field names the decoder looks at, so random dicts hit the interesting paths often.
KEYS = ["code", "status", "msg", "reason", "data", "nodeList", "keyId", "taskId", "nodeStatus", "scriptId",
        "recallInterval", "recallNum", "recallType"]
near_keys = st.sampled_from(KEYS) | st.text(max_size=6)
near_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(near_keys, children, max_size=6),
    max_leaves=30,
)
extra_fields = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in KEYS), json_values, max_size=3)
int64 = st.integers(min_value=0, max_value=BIG)  # the decoder's documented range in data, bounds included


@st.composite
def valid_bodies(draw) -> tuple[dict[str, Any], FlowDetail]:
    """A success answer in one of the envelope variants, with unknown fields sprinkled anywhere,
    and the FlowDetail it must decode to (built independently of the decoder)."""
    key_ids = draw(st.lists(int64, unique=True, max_size=6))
    raw_nodes, nodes = [], []
    for key_id in key_ids:
        node: dict[str, Any] = {"keyId": key_id, "nodeStatus": draw(int64)}
        expected_optional: dict[str, int | None] = {}
        for field in ("taskId", "scriptId"):
            choice = draw(st.sampled_from(["absent", "null", "int"]))
            expected_optional[field] = None
            if choice == "null":
                node[field] = None
            elif choice == "int":
                node[field] = expected_optional[field] = draw(int64)
        node.update(draw(extra_fields))
        raw_nodes.append(node)
        nodes.append(NodeDetail(key_id, expected_optional["taskId"], expected_optional["scriptId"], node["nodeStatus"]))
    data: dict[str, Any] = {
        "status": draw(int64),
        "recallInterval": draw(int64),
        "recallNum": draw(int64),
        "recallType": draw(int64),
    }
    node_list = draw(st.sampled_from(["list", "null", "absent"])) if not raw_nodes else "list"
    if node_list == "list":
        data["nodeList"] = raw_nodes
    elif node_list == "null":
        data["nodeList"] = None
    data.update(draw(extra_fields))
    envelope = draw(
        st.sampled_from([
            {"code": 0, "msg": "success"},
            {"code": "0", "msg": "success"},
            {"code": " 0 "},
            {"code": 0.0},
            {"status": 0, "reason": "ok"},
            {"status": "0", "reason": None},
            {"code": 0, "msg": ["not", "a", "string"]},
        ])
    )
    body = {**envelope, "data": data, **draw(extra_fields)}
    expected = FlowDetail(data["status"], data["recallInterval"], data["recallNum"], data["recallType"], tuple(nodes))
    return body, expected


def decode_or_error(body: Any) -> FlowDetail | ApiError:
    try:
        return parse_flow_detail(body)
    except ApiError as error:
        return error



# ---------------------------------------------------------------------------------------------
# The decoder


@hostile_settings(400)
@given(body=json_values | near_values | valid_bodies().map(lambda pair: pair[0]))
def test_any_json_value_decodes_or_raises_an_api_or_decode_error(body):
    for candidate in (body, roundtrip(body)):
        result = decode_or_error(candidate)  # anything but ApiError escapes and fails the test
        if isinstance(result, FlowDetail):
            assert isinstance(candidate, dict)
            assert type(result.status) is int and 0 <= result.status <= BIG
            settings = (result.recall_num, result.recall_type, result.recall_interval_minutes)
            assert all(v is None or (type(v) is int and 0 <= v <= BIG) for v in settings)
            assert all(0 <= n.key_id <= BIG and type(n.status) is int and n.status >= 0 for n in result.nodes)
        else:
            assert result.kind in (ErrorKind.API, ErrorKind.DECODE), result
            if result.kind is ErrorKind.API:
                assert int(result.code) != 0 and abs(int(result.code)) <= 2**31
            else:
                assert result.code == ""
            if not isinstance(candidate, dict):
                assert result.kind is ErrorKind.DECODE


@hostile_settings(150)
@given(pair=valid_bodies())
def test_valid_bodies_with_unknown_fields_decode_to_exactly_their_values(pair):
    body, expected = pair
    assert parse_flow_detail(body) == expected
    assert parse_flow_detail(roundtrip(body)) == expected


@pytest.mark.parametrize("status", [5, 99, 2**40, 2**63])  # negative ones are unreadable (tests/itnio)
def test_statuses_outside_the_documented_scale_are_accepted_and_rendered_unknown(status):
    body = mutated("data", "status", status)
    body["data"]["nodeList"][0]["nodeStatus"] = status
    detail = parse_flow_detail(roundtrip(body))
    assert detail.status == status and detail.nodes[0].status == status
    snapshot = Snapshot(flows=(FlowState(3, "f", detail, up=True, last_success=1.0, polls=1),), cycles=1)
    text = RenderedSnapshot.of([snapshot]).text.decode()
    samples = parse_samples(text)
    assert value(samples, "itnio_recall_flow_status", key_id="3") == float(status)
    assert value(samples, "itnio_recall_flow_state", key_id="3", state="unknown") == 1
    assert sum(v for labels, v in samples["itnio_recall_flow_state"] if labels["key_id"] == "3") == 1
    assert value(samples, "itnio_recall_flow_nodes", key_id="3", state="unknown") == 1
    assert value(samples, "itnio_recall_flow_nodes", key_id="3", state="in_progress") == 1
    assert value(samples, "itnio_recall_node_status", key_id="3", node_key_id="10") == float(status)
    promtool_ok([text.encode()])


# ---------------------------------------------------------------------------------------------
# The whole pipeline: a real server answering hostile bytes, the real client, poller and exposition

KEY = 7


FLOW_NAME = 'hostile "flow" \\ \n ✓'


class HostileApi:
    """One loopback server whose answer is whatever ``self.body`` holds."""

    def __init__(self) -> None:
        self.body = b""
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=self.body, content_type="application/json")

        self.runner, self.port = await serve(handler)

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def expected_result(raw: bytes) -> FlowDetail | ApiError:
    """What the whole pipeline must make of ``raw``: not JSON is decode, else the decoder's verdict
    (the decoder itself is pinned down by the tests above)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return ApiError(ErrorKind.DECODE, "", "invalid JSON")
    return decode_or_error(body)


async def one_cycle(api: HostileApi, raw: bytes) -> tuple[Snapshot, Telemetry, Exposition]:
    api.body = raw
    config = validate_config({
        "api": {"base_url": f"http://127.0.0.1:{api.port}", "api_key": "k", "timeout": "5s"},
        "poll": {"interval": "10s"},
        "flows": [{"key_id": KEY, "name": FLOW_NAME}],
    })
    telemetry = Telemetry()
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(
        config.api.base_url, Credentials("k", "s", "test"), timeout=config.api.timeout, max_connections=1,
        max_response_bytes=1 << 20, telemetry=telemetry.account("default"), retries=0,
    )
    try:
        poller = Poller(config, client, exposition.publish, clock=lambda: 1_800_000_000.0)
        snapshot = await poller.run_cycle()
    finally:
        await client.close()
    return snapshot, telemetry, exposition


def check_cycle(raw: bytes, snapshot: Snapshot, telemetry: Telemetry, exposition: Exposition) -> bytes:
    """Assert everything a cycle over ``raw`` must show; return the text body for promtool."""
    expected = expected_result(raw)
    (flow,) = snapshot.flows
    assert snapshot.cycles == 1 and flow.polls == 1 and flow.name == FLOW_NAME

    counters = parse_samples(generate_latest(telemetry.registry).decode())
    # -16 is signed again once with the clock taken from the answer's Date header: two requests
    sent = 2 if isinstance(expected, ApiError) and expected.is_clock_skew() else 1
    assert value(counters, "itnio_api_requests_total", endpoint=QUERY_DETAIL) == sent
    errors = {(labels["kind"], labels["code"]): v for labels, v in counters["itnio_api_errors_total"]}

    text = exposition.body(openmetrics=False, gzip=False)
    samples = parse_samples(text.decode())
    om = exposition.body(openmetrics=True, gzip=False).decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    om_samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for family in parse_openmetrics(om) for s in family.samples}
    up_key = ("itnio_recall_flow_up", (("account", "default"), ("key_id", str(KEY))))
    info = value(samples, "itnio_recall_flow_info", key_id=str(KEY), name=FLOW_NAME)
    assert info == 1

    if isinstance(expected, FlowDetail):
        assert flow.up and flow.last_error is None and flow.detail == expected
        assert sum(errors.values()) == 0
        assert value(samples, "itnio_recall_flow_up", key_id=str(KEY)) == 1 and om_samples[up_key] == 1
        assert value(samples, "itnio_recall_flow_status", key_id=str(KEY)) == float(expected.status)
        attempts = [v for labels, v in samples.get("itnio_recall_flow_recall_attempts", []) if labels["key_id"] == str(KEY)]
        assert attempts == ([] if expected.recall_num is None else [float(expected.recall_num)])
        nodes = [(labels["node_key_id"], labels["task_id"], labels["script_id"], v)
                 for labels, v in samples.get("itnio_recall_node_status", []) if labels["key_id"] == str(KEY)]
        assert sorted(nodes) == sorted(
            (str(n.key_id), "" if n.task_id is None else str(n.task_id),
             "" if n.script_id is None else str(n.script_id), float(n.status)) for n in expected.nodes
        )
        assert sum(v for labels, v in samples["itnio_recall_flow_nodes"]) == len(expected.nodes)
        assert sum(errors_ for _, errors_ in samples["itnio_recall_flow_poll_errors_total"]) == 0
    else:
        kind = expected.kind.value
        assert not flow.up and flow.last_error is not None
        assert (flow.last_error.kind, flow.last_error.code) == (expected.kind, expected.code)
        assert flow.errors == ((kind, 1),)
        # exactly one error per request sent, of exactly this kind and code (its label bounded)
        assert errors[(kind, code_label(expected.code))] == sent and sum(errors.values()) == sent
        assert value(samples, "itnio_recall_flow_up", key_id=str(KEY)) == 0 and om_samples[up_key] == 0
        assert value(samples, "itnio_recall_flow_poll_errors_total", key_id=str(KEY), kind=kind) == 1
        assert sum(v for _, v in samples["itnio_recall_flow_poll_errors_total"]) == 1
        assert "itnio_recall_flow_status" not in samples and "itnio_recall_node_status" not in samples
    return text


api_errors = st.fixed_dictionaries(
    {"code": st.integers(-(2**31), 2**31).filter(bool) | st.integers(-99, -1).map(str)},
    optional={"msg": json_values, "data": json_values},
)


raw_bodies = st.one_of(
    api_errors.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    near_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    valid_bodies().map(lambda pair: json.dumps(pair[0], allow_nan=True, ensure_ascii=False).encode()),
    st.binary(max_size=64),
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
)


def test_the_poller_never_raises_and_counts_what_it_cannot_decode_once():
    texts: dict[tuple, bytes] = {}
    with asyncio.Runner() as runner:
        api = HostileApi()
        runner.run(api.start())
        try:

            @hostile_settings(120)
            @given(raw=raw_bodies)
            def check(raw: bytes) -> None:
                snapshot, telemetry, exposition = runner.run(one_cycle(api, raw))
                text = check_cycle(raw, snapshot, telemetry, exposition)
                flow = snapshot.flows[0]
                detail = flow.detail
                signature = (flow.up, flow.last_error.kind if flow.last_error else None,
                             min(len(detail.nodes), 3) if detail else -1)
                texts.setdefault(signature, text)

            check()
        finally:
            runner.run(api.stop())
    # Both outcomes were exercised, and every distinct kind of page passes promtool.
    assert {sig[0] for sig in texts} == {True, False}
    assert {sig[1] for sig in texts} >= {None, ErrorKind.API, ErrorKind.DECODE}
    promtool_ok(list(texts.values()))


VALID_DATA = b'"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0'


# (name, raw body, the kind of error it must be, or None for a success) -- stated independently of the oracle
HOSTILE_RAW = [
    ("empty", b"", "decode"),
    ("not-json", b"not json", "decode"),
    ("binary", b"\xff\xfe\x00\x01", "decode"),
    ("invalid-utf8-in-string", b'{"code": 0, "msg": "\xff", "data": {' + VALID_DATA + b"}}", "decode"),
    ("nesting-beyond-recursion-limit", b"[" * 100_000 + b"]" * 100_000, "decode"),
    ("deep-unknown-field", b'{"code": 0, "data": {' + VALID_DATA + b', "x": '
     + b'{"x": ' * 500 + b"1" + b"}" * 500 + b"}}", None),
    ("bare-nan", b"NaN", "decode"),
    ("nan-status", b'{"code": 0, "data": {"status": NaN, "recallInterval": 1, "recallNum": 1, "recallType": 0}}',
     "decode"),
    # An unreadable recall setting costs that setting only: the flow stays up without its series.
    ("infinity-interval",
     b'{"code": 0, "data": {"status": 1, "recallInterval": Infinity, "recallNum": 1, "recallType": 0}}', None),
    ("1e400-overflows-to-inf",
     b'{"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1e400, "recallType": 0}}', None),
    ("41-digit-int", b'{"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 1'
     + b"0" * 40 + b"}}", None),
    ("negative-counts", b'{"code": 0, "data": {"status": 1, "recallInterval": -100, "recallNum": -5, "recallType": 0}}',
     None),
    ("full-width-digits", rb'{"code": 0, "data": {"status": 1, "recallInterval": "\uff15", "recallNum": "\uff15",'
     b' "recallType": 0}}', None),
    ("trailing-garbage", b'{"code": 0, "data": {' + VALID_DATA + b"}} trailing", "decode"),
    ("duplicate-node", b'{"code": 0, "data": {' + VALID_DATA
     + b', "nodeList": [{"keyId": 1, "nodeStatus": 1}, {"keyId": 1, "nodeStatus": 2}]}}', None),
    ("bom-and-unknown-states",
     b'\xef\xbb\xbf{"code": "0", "data": {"status": 9, "recallInterval": 1, "recallNum": 1, "recallType": 7}}', None),
    ("lone-surrogate-message", b'{"code": "-16", "msg": "\\ud800 lone surrogate", "data": null}', "api"),
    ("duplicate-code-last-wins", b'{"code": 0, "code": 5, "msg": "x", "data": {' + VALID_DATA + b"}}", "api"),
]


@pytest.mark.parametrize("raw, kind", [case[1:] for case in HOSTILE_RAW], ids=[case[0] for case in HOSTILE_RAW])
def test_hand_picked_hostile_bytes(raw, kind):
    snapshot, telemetry, exposition = asyncio.run(_serve_one(raw))
    flow = snapshot.flows[0]
    assert (flow.last_error.kind.value if flow.last_error else None) == kind
    text = check_cycle(raw, snapshot, telemetry, exposition)
    samples = parse_samples(text.decode())
    if raw.startswith(b"\xef\xbb\xbf"):  # BOM tolerated, unknown status and recall type rendered as such
        assert value(samples, "itnio_recall_flow_state", key_id=str(KEY), state="unknown") == 1
        assert value(samples, "itnio_recall_flow_info", key_id=str(KEY), recall_type="unknown") == 1
    if kind == "api":
        assert flow.last_error.code in ("-16", "5")
    if b'"recallNum": 1e400' in raw or b"-5" in raw or b"uff15" in raw:  # unreadable: no series, counted as drift
        assert not samples.get("itnio_recall_flow_recall_attempts")
        drift = {(labels["field"], labels["kind"]): v for labels, v in parse_samples(
            generate_latest(telemetry.registry).decode())["itnio_api_schema_drift_total"]}
        assert drift[("data.recallNum", "unreadable")] == 1
    promtool_ok([text])


async def _serve_one(raw: bytes):
    api = HostileApi()
    await api.start()
    try:
        return await one_cycle(api, raw)
    finally:
        await api.stop()


def promtool_ok(bodies: list[bytes]) -> None:
    promtool = require_tool("promtool")
    assert bodies
    for body in bodies:
        result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
            result, body.decode(errors="replace")[:2000])


def test_hostile_list_and_call_answers_are_api_errors_or_render_cleanly():
    """Whatever the two new endpoints answer: an ApiError, or values that render to valid text."""
    from hypothesis import given
    from hypothesis import strategies as st
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.itnio.model import FlowDetail, NodeDetail
    from exporter.metrics.exposition import RenderedSnapshot
    from exporter.polling.snapshot import FlowState, Snapshot

    fields = st.sampled_from(["keyId", "taskId", "taskName", "createTime", "finishNum", "status", "numCnt",
                              "callTotal", "success", "fail", "acd"])
    obj = st.dictionaries(fields, scalars, max_size=8)
    body = st.fixed_dictionaries({"code": st.sampled_from([0, "0", 1]), "data": st.fixed_dictionaries(
        {"records": st.lists(obj, max_size=3)}) | obj})

    @hostile_settings(60)
    @given(body)
    def check(raw):
        for parse in (parse_flow_page, parse_call_stats):
            try:
                parsed = parse(raw)
            except ApiError:
                continue
            if parse is parse_call_stats:
                detail = FlowDetail(1, 1, 1, 1, (NodeDetail(5, 6, None, 1),))
                state = FlowState(1, "n", detail=detail, up=True, calls=((5, parsed),))
            else:
                state = FlowState(1, "n", record=parsed.records[0]) if parsed.records else FlowState(1, "n")
            text = RenderedSnapshot.of([Snapshot(flows=(state,), cycles=1)]).text.decode()
            assert list(text_string_to_metric_families(text))

    check()


def test_hostile_balance_answers_are_api_errors_or_render_cleanly():
    """Whatever getBalance answers: an ApiError, or amounts that render to valid text in both formats."""
    import time

    from hypothesis import given
    from hypothesis import strategies as st
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.itnio.decoding import parse_balance
    from exporter.metrics.exposition import Exposition
    from exporter.metrics.telemetry import Telemetry
    from exporter.polling.balance import BalanceState

    fields = st.sampled_from(["status", "code", "reason", "msg", "balance", "gift", "credit", "data"])
    body = st.dictionaries(fields, scalars, max_size=8) | st.fixed_dictionaries(
        {"status": st.sampled_from(["0", 0]), "balance": scalars, "gift": scalars, "credit": scalars})
    exposition = Exposition(Telemetry().registry)

    @hostile_settings(80)
    @given(body)
    def check(raw):
        try:
            balance = parse_balance(raw)
        except ApiError:
            return
        exposition.publish_balance(BalanceState(enabled=True, balance=balance, last_success=time.time()))
        text = exposition.body(openmetrics=False, gzip=False).decode()
        assert any(f.name == "itnio_account_balance" for f in text_string_to_metric_families(text))
        assert list(parse_openmetrics(exposition.body(openmetrics=True, gzip=False).decode()))

    check()
