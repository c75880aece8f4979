"""queryPage and group/call/detail: config, strict decoding, and the client against the simulator."""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from exporter.config import ConfigError, validate_config
from exporter.simulator import ENVELOPES, Fault, Simulator, static_flows
from exporter.vendor.decoding import parse_call_stats, parse_flow_page
from exporter.vendor.endpoints import GROUP_CALL_DETAIL, QUERY_PAGE
from exporter.vendor.errors import ApiError, ErrorKind
from tests.conftest import value
from tests.vendor.test_client import counters, make_client

BASE = {"api": {"api_key": "k", "api_secret": "s"}}


def problems_of(raw):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return info.value.problems


def test_discovery_defaults_and_flows_may_be_empty_when_it_is_on():
    config = validate_config({**BASE, "flows": [{"key_id": 1}]})
    assert not config.discovery.enabled and not config.enrich.node_calls
    assert (config.discovery.lookback, config.discovery.refresh, config.discovery.page_size) == (7 * 86400, 300, 100)
    assert config.api.timezone == "UTC"
    config = validate_config({**BASE, "discovery": {"enabled": True, "lookback": "2d", "task_name": "promo"}})
    assert config.flows == [] and config.discovery.lookback == 172800 and config.discovery.task_name == "promo"
    assert problems_of({**BASE, "flows": []}) == ["flows: at least one flow to watch is needed (or discovery.enabled: true)"]


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"discovery": {"enabled": True, "page_size": 101}}, "discovery.page_size: "),
        ({"discovery": {"enabled": True, "page_size": 0}}, "discovery.page_size: "),
        ({"discovery": {"enabled": True, "refresh": 300}}, "discovery.refresh: 300 has no unit"),
        ({"discovery": {"enabled": "yes"}}, "discovery.enabled: "),
        ({"discovery": {"enabled": True, "colour": 1}}, "discovery.colour: unknown field"),
        ({"discovery": {"enabled": True, "task_name": " "}}, "discovery.task_name: must not be empty"),
        ({"enrich": {"node_calls": 1}}, "enrich.node_calls: "),
        ({"api": {**BASE["api"], "timezone": "Mars/Olympus"}}, "api.timezone: 'Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_new_sections_report_problems_per_field(section, expected):
    problems = problems_of({**BASE, "flows": [{"key_id": 1}], **section})
    assert len(problems) == 1 and problems[0].startswith(expected), problems


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
    for bad in ({"keyId": "x"}, {"keyId": 1.5}, {"taskId": 1}, {"keyId": 1, "createTime": "yesterday"},
                {"keyId": 1, "finishNum": [1]}, {"keyId": True}):
        with pytest.raises(ApiError) as info:
            parse_flow_page({"code": 0, "data": {"records": [bad]}})
        assert info.value.kind is ErrorKind.DECODE
    with pytest.raises(ApiError) as info:
        parse_flow_page({"code": "-22", "msg": "Parameter exception"})
    assert (info.value.kind, info.value.code) == (ErrorKind.API, "-22")
    with pytest.raises(ApiError):
        parse_flow_page({"code": 0, "data": {"records": {}}})


def test_call_stats_accept_numbers_or_numeric_strings_and_nothing_else():
    stats = parse_call_stats({"code": 0, "data": {"numCnt": "10", "callTotal": 12, "success": "8", "fail": 4, "acd": "37.5"}})
    assert (stats.numbers, stats.calls, stats.succeeded, stats.failed, stats.acd_seconds) == (10, 12, 8, 4, 37.5)
    assert parse_call_stats({"code": 0, "data": {}}).calls is None
    for bad in ({"callTotal": "many"}, {"acd": float("inf")}, {"success": True}, {"fail": {}}):
        with pytest.raises(ApiError) as info:
            parse_call_stats({"code": 0, "data": bad})
        assert info.value.kind is ErrorKind.DECODE


def window(sim, *, name=None):
    now = time.time()
    fmt = lambda t: datetime.fromtimestamp(t, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    params = {"strTime": fmt(now - 86400), "endTime": fmt(now + 3600)}
    if name:
        params["taskName"] = name
    return params


@pytest.mark.parametrize("variant", ENVELOPES)
async def test_the_client_pages_and_gets_call_detail_with_every_envelope(variant):
    flows = static_flows(5, 1)
    flows[0].created = time.time() - 10 * 86400  # outside the day asked for
    flows[1].task_name = "promo-march"
    sim = Simulator(flows=flows, envelope_variant=variant)
    await sim.start()
    client, telemetry = make_client(sim.base_url)
    try:
        first = await client.query_page(1, 3, window(sim))
        second = await client.query_page(2, 3, window(sim))
        only = await client.query_page(1, 100, window(sim, name="promo"))
        stats = await client.group_call_detail(7002000)
    finally:
        await client.close()
        await sim.stop()
    assert (first.total, first.pages, len(first.records), len(second.records)) == (4, 2, 3, 1)
    assert sorted(r.key_id for r in first.records + second.records) == [2, 3, 4, 5]
    assert [r.key_id for r in only.records] == [2]
    assert {k: sim.page_requests[0][k] for k in ("current", "size")} == {"current": 1, "size": 3}
    assert stats.calls == sim.call_data(7002000)["callTotal"] and stats.acd_seconds == 42
    samples = counters(telemetry)
    assert value(samples, "itnio_api_requests_total", endpoint=QUERY_PAGE) == 3
    assert value(samples, "itnio_api_requests_total", endpoint=GROUP_CALL_DETAIL) == 1


async def test_failures_of_the_new_endpoints_are_counted_like_the_rest():
    sim = Simulator(flows=static_flows(2, 1))
    sim.page_faults[1] = Fault("http", 502)
    sim.task_faults[5] = Fault("api", -24)
    await sim.start()
    client, telemetry = make_client(sim.base_url)
    try:
        with pytest.raises(ApiError):
            await client.query_page(1, 10, window(sim))
        del sim.page_faults[1]
        with pytest.raises(ApiError) as info:
            await client.group_call_detail(5)
        assert info.value.code == "-24"
        with pytest.raises(ApiError) as info:
            await client.query_page(1, 10, {"strTime": "yesterday"})
        assert info.value.code == "-22"
    finally:
        await client.close()
        await sim.stop()
    samples = counters(telemetry)
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_PAGE, kind="http", code="502") == 1
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_PAGE, kind="api", code="-22") == 1
    assert value(samples, "itnio_api_errors_total", endpoint=GROUP_CALL_DETAIL, kind="api", code="-24") == 1
    # the task id is in the path, never in a label
    assert all(labels["endpoint"] in ("recallFlow/queryDetail", QUERY_PAGE, GROUP_CALL_DETAIL)
               for labels, _ in samples["itnio_api_requests_total"])


def test_config_check_reports_the_new_sections(tmp_path):
    from tests.test_cli import run, write

    bad = write(tmp_path, """
        api:
          api_key: k
          api_secret: s
          timezone: Nowhere/Atlantis
        discovery:
          enabled: true
          page_size: 500
          refresh: soon
        enrich:
          node_calls: "yes"
    """)
    result = run("--config.check", "--config.file", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    fields = sorted(line.split(":")[0] for line in result.stderr.strip().splitlines())
    assert fields == ["api.timezone", "discovery.page_size", "discovery.refresh", "enrich.node_calls"], result.stderr
    good = write(tmp_path, """
        api:
          api_key: k
          api_secret: s
        discovery:
          enabled: true
        enrich:
          node_calls: true
    """, "good.yaml")
    result = run("--config.check", "--config.file", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK (0 flows, discovery on, node calls on)" in result.stdout


def test_hostile_list_and_call_answers_are_api_errors_or_render_cleanly():
    """Whatever the two new endpoints answer: an ApiError, or values that render to valid text."""
    from hypothesis import given
    from hypothesis import strategies as st
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.metrics.exposition import RenderedSnapshot
    from exporter.polling.snapshot import FlowState, Snapshot
    from exporter.vendor.model import FlowDetail, NodeDetail
    from tests.integration.test_hostile_input import hostile_settings, scalars

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
            text = RenderedSnapshot.of(Snapshot(flows=(state,), cycles=1)).text.decode()
            assert list(text_string_to_metric_families(text))

    check()


def test_docs_discovery_examples_are_real(tmp_path):
    """The README's discovery section: its PromQL parses, its config block validates, its metrics exist."""
    import re
    import subprocess
    from pathlib import Path

    import yaml

    from tests.conftest import require_tool

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    text = readme.split("## Discovery and per-node call outcomes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": [
        {"record": f"docs:example{i}", "expr": block} for i, block in enumerate(blocks)]}]}))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    raw = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    raw["api"].update(api_key="k", api_secret="s")
    assert validate_config(raw).discovery.enabled
    from exporter.metrics.catalogue import BY_NAME

    for name in set(re.findall(r"`(itnio_[a-z_]+)", text)):
        assert name.removesuffix("_total").removesuffix("_info") in BY_NAME, name
