"""Rendering /metrics (exporter/metrics/exposition.py).

Label values from the config (flow names) survive rendering exactly: the text format and
OpenMetrics allow any UTF-8 in a label value, with ``\\``, ``"`` and the newline escaped. Every
name below must come back from prometheus_client's parsers (both formats) unchanged, must not
inject series, and the page must pass ``promtool check metrics``. Large pages are rendered once
and reused briefly.
"""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.config import (
    ConfigError,
    Credentials,
    parse_yaml,
    validate_config,
)
from exporter.itnio.client import ItnioClient
from exporter.itnio.model import FlowDetail, NodeDetail
from exporter.metrics.exposition import Exposition, RenderedSnapshot
from exporter.metrics.telemetry import Telemetry
from exporter.polling.poller import Poller
from exporter.polling.snapshot import FlowState, Snapshot
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET
from tests.conftest import exporter_config, require_tool

HOSTILE_NAMES = [
    "",
    "plain",
    'we"ird\\\nname ✓',
    '"',
    "\\",
    "\\n",  # a backslash and an n, not a newline
    "\\\\\"\\",
    "\n",
    "\n\n",
    "line\r\nbreak",
    "\r",
    "tab\tand\x0bvt\x0cff",
    "nul\x00inside",
    "\x1b[31mansi\x1b[0m",
    "\x7f\x80\x85\x9f",
    "\u2028\u2029",
    "\ufeffbom",
    "zero\u200bwidth\u200djoiner",
    "e\u0301\u0301 combining",
    "\u202eRTL override",
    "עברית ועוד",
    "العربية",
    "中文名称",
    "🙂👩‍👩‍👧‍👦🏳️‍🌈",
    "\U0010fffd private use",
    "\uffff",
    "} 1\nfake_metric 2\n# EOF\n",
    '",name="injected',
    "# HELP itnio_recall_flow_up injected",
    "x" * 10_000,
]


def render(names: list[str]) -> RenderedSnapshot:
    detail = FlowDetail(1, 5, 3, 0, (NodeDetail(10, None, 7, 2),))
    flows = tuple(
        FlowState(key_id=i + 1, name=name, detail=detail, up=True, last_success=1.0, polls=1)
        for i, name in enumerate(names)
    )
    return RenderedSnapshot.of([Snapshot(flows=flows, cycles=1, cycle_started=1.0, cycle_duration=0.5)])


def names_by_key(families) -> dict[str, str]:
    out: dict[str, str] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "itnio_recall_flow_info":
                assert sample.labels["key_id"] not in out, sample
                assert sample.labels["recall_type"] == "all" and sample.value == 1
                out[sample.labels["key_id"]] = sample.labels["name"]
    return out


def sample_count(families) -> int:
    return sum(len(family.samples) for family in families)


def check_roundtrip(names: list[str], rendered: RenderedSnapshot | None = None) -> RenderedSnapshot:
    rendered = rendered or render(names)
    expected = {str(i + 1): name for i, name in enumerate(names)}
    text = list(parse_text(rendered.text.decode("utf-8")))
    openmetrics = list(parse_openmetrics(rendered.openmetrics.decode("utf-8") + "# EOF\n"))
    assert names_by_key(text) == expected
    assert names_by_key(openmetrics) == expected
    # nothing injected, nothing lost: every flow has its full set of series
    assert sample_count(text) == rendered.series
    ups = [s for f in text for s in f.samples if s.name == "itnio_recall_flow_up"]
    assert sorted(s.labels["key_id"] for s in ups) == sorted(expected) and all(s.value == 1 for s in ups)
    return rendered


def promtool_ok(body: bytes) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_hostile_names_roundtrip_exactly_in_both_formats_and_pass_promtool():
    rendered = check_roundtrip(HOSTILE_NAMES)
    # the escaping itself, as the text format specifies it
    assert b'name="we\\"ird\\\\\\nname \xe2\x9c\x93"' in rendered.text
    assert b'name="we\\"ird\\\\\\nname \xe2\x9c\x93"' in rendered.openmetrics
    promtool_ok(rendered.text)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(names=st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_any_text_name_roundtrips_exactly(names):
    check_roundtrip(names)


def test_a_sweep_over_all_planes_roundtrips_and_passes_promtool():
    names = [chr(c) * 3 + '\\"\n' + chr(c) for c in range(1, 0x110000, 2039) if not 0xD800 <= c <= 0xDFFF]
    assert len(names) > 500
    rendered = check_roundtrip(names)
    promtool_ok(rendered.text)


class FixedSource:
    async def query_detail(self, key_id: int, deadline=None, may_send=None) -> FlowDetail:
        return FlowDetail(2, 1, 1, 1, (NodeDetail(key_id * 10, 1, None, 0),))


def poll_once(config_text: str) -> tuple[Snapshot, bytes, bytes]:
    config = validate_config(parse_yaml(config_text))
    exposition = Exposition(Telemetry().registry)

    async def cycle() -> Snapshot:
        return await Poller(config, FixedSource(), exposition.publish, clock=lambda: 1.0).run_cycle()

    snapshot = asyncio.run(cycle())
    return snapshot, exposition.body(openmetrics=False, gzip=False), exposition.body(openmetrics=True, gzip=False)


def info_names(text: bytes, openmetrics: bytes) -> tuple[dict[str, str], dict[str, str]]:
    return names_by_recall_type(parse_text(text.decode())), names_by_recall_type(parse_openmetrics(openmetrics.decode()))


def names_by_recall_type(families) -> dict[str, str]:
    return {s.labels["key_id"]: s.labels["name"] for f in families for s in f.samples
            if s.name == "itnio_recall_flow_info" and s.labels["recall_type"] == "failed"}


def test_names_from_a_yaml_config_file_roundtrip_through_the_poller():
    direct = validate_config({"api": {"api_key": "k"}, "flows": [{"key_id": 1, "name": 'we"ird\\\nname ✓'}]})
    assert direct.flows[0].name == 'we"ird\\\nname ✓'
    config_text = (
        "api: {api_key: k}\n"
        "flows:\n"
        '  - {key_id: 1, name: "we\\"ird\\\\\\nname \\u2713"}\n'
        "  - key_id: 2\n"
        "    name: |-\n"
        '      multi "line"\n'
        "      back\\slash\n"
        "  - {key_id: 3, name: 'single ''quoted'' \\t not a tab'}\n"
        '  - {key_id: 4, name: "nul\\0 bell\\a \\U0001F642 \\N \\_"}\n'
    )
    snapshot, text, openmetrics = poll_once(config_text)
    expected = {
        "1": 'we"ird\\\nname ✓',
        "2": 'multi "line"\nback\\slash',
        "3": "single 'quoted' \\t not a tab",
        "4": "nul\x00 bell\x07 🙂 \x85 \xa0",
    }
    assert [flow.name for flow in snapshot.flows] == list(expected.values())
    assert info_names(text, openmetrics) == (expected, expected)
    promtool_ok(text)


def test_a_lone_surrogate_in_a_yaml_name_is_a_config_error_and_never_stops_rendering():
    # PyYAML turns "\ud800" into a lone surrogate that UTF-8 cannot encode: the config refuses it,
    # naming the field; a pair of escaped surrogates is the character it encodes and is fine.
    with pytest.raises(ConfigError) as info:
        validate_config(parse_yaml('api: {api_key: k}\nflows:\n  - {key_id: 1, name: "lone \\ud800 high"}\n'))
    assert info.value.problems[0].startswith("flows[0].name: ")
    config_text = (
        "api: {api_key: k}\n"
        "flows:\n"
        '  - {key_id: 2, name: "pair \\ud83d\\ude42"}\n'
        '  - {key_id: 3, name: "fine"}\n'
    )
    snapshot, text, openmetrics = poll_once(config_text)
    expected = {"2": "pair 🙂", "3": "fine"}
    assert info_names(text, openmetrics) == (expected, expected)
    promtool_ok(text)
    # Names reach the renderer by other roads too: it still renders, with a replacement character.
    assert 'name="\ufffd"'.encode() in render(["\udfff"]).text


async def test_large_answers_are_reused_briefly_and_dropped_with_each_new_snapshot(sim, monkeypatch):
    import gzip as gzip_module

    from exporter.metrics import exposition as exposition_module

    monkeypatch.setattr(exposition_module, "OFFLOAD_SERIES", 10)  # make the simulator's 5 flows "large"
    telemetry = Telemetry()
    config = validate_config(exporter_config(sim))
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry.account("default"))
    poller = Poller(config, client, exposition.publish)
    try:
        await poller.run_cycle()
        plain = exposition.body(openmetrics=False, gzip=False)
        assert exposition.body(openmetrics=False, gzip=False) is plain  # reused within LIVE_TTL
        assert gzip_module.decompress(exposition.body(openmetrics=False, gzip=True)) == plain
        assert b"itnio_api_requests_total{account=\"default\",endpoint=\"recallFlow/queryDetail\"} 5.0" in plain
        await poller.run_cycle()  # a new snapshot: fresh counters at once (the 2 terminal flows wait)
        monkeypatch.setattr(exposition_module, "LIVE_TTL", 0.0)  # and re-rendered once it expires
        fresh = exposition.body(openmetrics=False, gzip=False)
        assert b"itnio_api_requests_total{account=\"default\",endpoint=\"recallFlow/queryDetail\"} 8.0" in fresh
        assert exposition.body(openmetrics=False, gzip=False) is not fresh
    finally:
        await client.close()


def test_the_balance_is_rendered_on_each_scrape_and_leaves_once_stale():
    from exporter.itnio.model import Balance
    from exporter.polling.balance import BalanceState

    exposition = Exposition(Telemetry().registry)
    assert b"itnio_account_balance" not in exposition.body(openmetrics=False, gzip=False)
    state = BalanceState(enabled=True, balance=Balance((("actual", 99.99), ("gift", 50.0), ("credit", 0.0))),
                         last_success=time.time(), stale_after=900.0, low_threshold=50.0)
    exposition.publish_balance(state)
    for openmetrics in (False, True):
        body = exposition.body(openmetrics=openmetrics, gzip=False).decode()
        parse = parse_openmetrics if openmetrics else parse_text
        families = {family.name: family for family in parse(body)}
        assert {s.labels["kind"]: s.value for s in families["itnio_account_balance"].samples} == {
            "actual": 99.99, "gift": 50.0, "credit": 0.0}
        assert families["itnio_account_balance_low_threshold"].samples[0].value == 50.0
        assert "quote currency" in families["itnio_account_balance"].documentation
    # older than stale_after: no balance, but its threshold and the time of the last success stay
    exposition.publish_balance(replace(state, last_success=time.time() - 901))
    body = exposition.body(openmetrics=False, gzip=False).decode()
    assert "itnio_account_balance{" not in body
    assert 'itnio_account_balance_low_threshold{account="default"} 50.0' in body
    assert "itnio_account_balance_last_success_timestamp_seconds" in body
    assert 'itnio_account_balance_interval_seconds{account="default"} 300.0' in body  # what ItnioBalanceUnknown compares it with


async def test_a_snapshot_whose_render_finishes_late_never_replaces_a_newer_one(monkeypatch):
    # A large snapshot renders in a thread; a reload that removes a flow publishes a small one
    # meanwhile. The older render finishing last must not bring the removed flow back.
    import threading

    from exporter.metrics import exposition as exposition_module

    older = Snapshot(flows=(FlowState(1, "removed"), FlowState(2, "kept")))
    newer = Snapshot(flows=(FlowState(2, "kept"),))
    started, release = threading.Event(), threading.Event()
    render = exposition_module.AccountRender.of

    def holds_older(snapshots) -> bool:
        return any(snapshot is older for snapshot in snapshots)

    def slow_for_older(snapshot: Snapshot, cooperative: bool = False):
        if snapshot is older:
            started.set()
            release.wait(10)
        return render(snapshot, cooperative)

    monkeypatch.setattr(exposition_module, "series_count", lambda s: 10**6 if holds_older(s) else 0)
    monkeypatch.setattr(exposition_module.AccountRender, "of", slow_for_older)
    exposition = Exposition(Telemetry().registry)
    late = asyncio.create_task(exposition.publish(older))
    await asyncio.to_thread(started.wait, 10)
    meanwhile = asyncio.create_task(exposition.publish(newer))  # waits for the render under way, then its own
    await asyncio.sleep(0.05)
    assert not meanwhile.done()
    release.set()
    await asyncio.gather(late, meanwhile)
    assert exposition.snapshots[0] is newer
    assert b'key_id="1"' not in exposition.body(openmetrics=False, gzip=False)


def _accounts_snapshots() -> list[Snapshot]:
    detail = FlowDetail(1, 5, 3, 0, (NodeDetail(10, None, 7, 2), NodeDetail(11, 3, None, 4)))
    hostile = 'say "hi"\n\\ \u2028'
    return [
        Snapshot(account="eu-main", flows=(FlowState(12, hostile, detail=detail, up=True, last_success=1.0, polls=2),
                                           FlowState(13, "down", polls=1, errors=(("timeout", 1),))),
                 cycles=3, cycle_started=5.0, cycle_duration=0.25),
        Snapshot(account="us-resell", flows=(FlowState(12, "same key", detail=detail, up=True, last_success=2.0),)),
        Snapshot(account="apac", flows=(), cycles=1, cycle_started=7.0),
    ]


def test_accounts_rendered_apart_and_joined_are_the_bytes_of_one_render():
    from exporter.metrics.exposition import AccountRender

    snapshots = _accounts_snapshots()
    whole = RenderedSnapshot.of(snapshots)
    joined = RenderedSnapshot.join([AccountRender.of(snapshot) for snapshot in snapshots])
    assert joined.text == whole.text and joined.openmetrics == whole.openmetrics
    assert joined.series == whole.series
    assert gzip.decompress(joined.text_gzip.finish(b"")) == whole.text
    promtool_ok(joined.text)


async def test_an_account_publishing_renders_only_its_own_flows_again(monkeypatch):
    from exporter.metrics import exposition as exposition_module

    rendered: list[str] = []
    render = exposition_module.AccountRender.of

    def counting(snapshot: Snapshot, cooperative: bool = False):
        rendered.append(snapshot.account)
        return render(snapshot, cooperative)

    monkeypatch.setattr(exposition_module.AccountRender, "of", counting)
    exposition = Exposition(Telemetry().registry)
    eu, us, apac = _accounts_snapshots()
    for snapshot in (eu, us, apac):
        await exposition.publish(snapshot)
    rendered.clear()
    newer = replace(us, cycles=us.cycles + 1)
    await exposition.publish(newer)
    assert rendered == ["us-resell"]  # the other two accounts' bytes are reused
    assert exposition.rendered.text == RenderedSnapshot.of([eu, newer, apac]).text
    await exposition.remove("eu-main")
    assert rendered == ["us-resell"] and b'account="eu-main"' not in exposition.rendered.text
