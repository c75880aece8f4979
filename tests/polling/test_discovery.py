"""Discovery through queryPage (exporter/polling/discovery.py), against the simulator on loopback."""

import asyncio
import re
import textwrap
import time

import pytest
from structlog.testing import capture_logs

from exporter.config import ConfigError, load_config
from exporter.itnio.endpoints import QUERY_PAGE
from exporter.polling.discovery import Discovery
from exporter.simulator import DEMO_API_SECRET, Fault, SimFlow, static_flows
from tests.conftest import scrape, value

DAY = 86400


def listed_flows(count: int, first_key: int = 1, nodes: int = 1) -> list[SimFlow]:
    """Flows created a minute apart (newest = highest keyId), with list metadata."""
    now = time.time()
    flows = static_flows(count, nodes, first_key)
    for flow in flows:
        flow.status = 1
        flow.created = now - 3600 - 60 * (first_key + count - flow.key_id)
        flow.task_id = 800 + flow.key_id
        flow.task_name = f"campaign-{flow.key_id}"
        flow.finish_num = flow.key_id % 3
    return flows


@pytest.fixture
async def listing_sim(make_sim):
    return await make_sim(flows=listed_flows(5))


def discovering(**discovery):
    return {"discovery": {"enabled": True, "page_size": 2, "lookback": "1d", **discovery}}


def watched(exporter) -> list[int]:
    return [flow.key_id for flow in exporter.account().poller.flows]


async def test_discovered_flows_are_watched_with_their_list_metadata(listing_sim, make_exporter):
    sim = listing_sim
    exporter = await make_exporter(sim, run_poller=False, flows=[{"key_id": 2, "name": "static-two"}], **discovering())
    assert await exporter.account().source(Discovery).run_once()
    assert sorted(watched(exporter)) == [1, 2, 3, 4, 5] and len(watched(exporter)) == 5
    # 5 flows at 2 a page: 3 pages, each asked once, with the vendor's time format
    assert [(body["current"], body["size"]) for body in sim.page_requests] == [(1, 2), (2, 2), (3, 2)]
    times = sim.page_requests[0]["params"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", times[k]) for k in ("strTime", "endTime"))
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_flow_info", key_id="2", name="static-two", task_id="802",
                 task_name="campaign-2") == 1  # the static name wins
    assert value(samples, "itnio_recall_flow_info", key_id="4", name="campaign-4", task_name="campaign-4") == 1
    assert value(samples, "itnio_recall_flow_finished_attempts", key_id="4") == 1
    assert value(samples, "itnio_recall_flow_created_timestamp_seconds", key_id="5") == int(sim.flows[5].created)
    assert value(samples, "itnio_exporter_flows") == 5 and value(samples, "itnio_exporter_discovered_flows") == 5
    assert value(samples, "itnio_exporter_discovery_last_run_successful") == 1
    assert value(samples, "itnio_api_requests_total", endpoint=QUERY_PAGE) == 3
    assert all(v == 1 for _, v in samples["itnio_recall_flow_up"])


async def test_task_name_filter_and_time_zone_reach_the_request(make_exporter, make_sim):
    flows = listed_flows(3)
    flows[1].task_name = "spring-promo"
    sim = await make_sim(flows=flows, timezone="Asia/Shanghai")
    exporter = await make_exporter(sim, run_poller=False, flows=[], api={"timezone": "Asia/Shanghai"},
                                   **discovering(task_name="promo"))
    assert await exporter.account().source(Discovery).run_once()
    assert watched(exporter) == [2]
    assert sim.page_requests[0]["params"]["taskName"] == "promo"
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    # createTime was written in Shanghai time and read back in it: the same instant
    assert value(samples, "itnio_recall_flow_created_timestamp_seconds", key_id="2") == int(flows[1].created)


@pytest.mark.parametrize("change", ["created", "deleted"])
async def test_a_list_that_shifts_between_pages_loses_no_flow_and_counts_none_twice(change, make_exporter, make_sim):
    sim = await make_sim(flows=listed_flows(7))

    def between_pages(page: int) -> None:
        if page != 1 or sim.after_page is None:
            return
        sim.after_page = None  # once
        if change == "created":  # newest first: everything after page 1 moves down one place
            (new,) = listed_flows(1, first_key=50)
            new.created = time.time()
            sim.flows[50] = new
        else:  # everything after page 1 moves up one place
            del sim.flows[7]

    sim.after_page = between_pages
    exporter = await make_exporter(sim, run_poller=False, flows=[], **discovering(page_size=3))
    assert await exporter.account().source(Discovery).run_once()
    expected = {1, 2, 3, 4, 5, 6, 7} | ({50} if change == "created" else set())
    assert sorted(watched(exporter)) == sorted(expected) and len(watched(exporter)) == len(expected)
    # the change was noticed and the list read again
    assert len(sim.page_requests) > 3
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_flows") == len(expected)
    assert len(samples["itnio_recall_flow_up"]) == len(expected)


async def test_flows_leave_only_out_of_the_window_and_ended_and_a_failed_run_keeps_the_set(listing_sim, make_exporter):
    sim = listing_sim
    exporter = await make_exporter(sim, run_poller=False, flows=[{"key_id": 1}], api={"retries": 0}, **discovering())
    assert await exporter.account().source(Discovery).run_once()
    await exporter.account().poller.run_cycle()
    assert sorted(watched(exporter)) == [1, 2, 3, 4, 5]

    # 4 leaves the window while running, 5 has ended within it, 3 left and ended: only 3 goes
    sim.flows[4].created = sim.flows[3].created = time.time() - 3 * DAY
    sim.flows[5].status = sim.flows[3].status = 2
    await exporter.account().poller.run_cycle()
    assert await exporter.account().source(Discovery).run_once()
    assert sorted(watched(exporter)) == [1, 2, 4, 5]
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_flow_up", key_id="3") is None

    # a run that fails on page 2 changes nothing, although 4 has ended by now
    sim.flows[4].status = 3
    await exporter.account().poller.run_cycle()
    sim.page_faults[2] = Fault("http", 503)
    assert not await exporter.account().source(Discovery).run_once()
    assert sorted(watched(exporter)) == [1, 2, 4, 5]
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_discovery_last_run_successful") == 0
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_PAGE, kind="http", code="503") == 1

    # the next good run lets 4 go; static flow 1 stays even when it leaves the list
    del sim.page_faults[2]
    sim.flows[1].created = time.time() - 3 * DAY
    sim.flows[1].status = 2
    await exporter.account().poller.run_cycle()
    assert await exporter.account().source(Discovery).run_once()
    assert sorted(watched(exporter)) == [1, 2, 5]
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_discovered_flows") == 2  # 2 and 5: 1 is no longer listed
    assert value(samples, "itnio_recall_flow_info", key_id="1", task_id="", task_name="") == 1


async def test_a_deleted_flow_that_is_no_longer_listed_leaves(listing_sim, make_exporter):
    sim = listing_sim
    exporter = await make_exporter(sim, run_poller=False, flows=[], **discovering())
    assert await exporter.account().source(Discovery).run_once()
    del sim.flows[3]  # queryDetail now answers -24, and the list no longer has it
    await exporter.account().poller.run_cycle()
    assert await exporter.account().source(Discovery).run_once()
    assert sorted(watched(exporter)) == [1, 2, 4, 5]


async def test_without_the_features_no_new_endpoint_or_series_appears(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, balance={"enabled": False})
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert {labels["endpoint"] for labels, _ in samples["itnio_api_requests_total"]} == {"recallFlow/queryDetail"}
    for metric in ("itnio_exporter_discovered_flows", "itnio_recall_node_calls", "itnio_recall_flow_finished_attempts"):
        assert metric not in samples
    assert sim.page_requests == [] and not sim.requests_per_task


async def wait_for(condition, seconds=6.0):
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110  (it scrapes a live exporter: no event to wait on)
            await asyncio.sleep(0.1)


async def test_running_flows_appear_and_leave_on_their_own_and_reloads_keep_them(tmp_path, exporter_from_file, make_sim):
    sim = await make_sim(flows=listed_flows(2))
    path = tmp_path / "config.yaml"

    def write(discovery: str, flows: str = "flows: []") -> None:
        path.write_text(textwrap.dedent(f"""\
            api:
              base_url: {sim.base_url}
              api_key: demo-key
              api_secret: {DEMO_API_SECRET}
              timeout: 500ms
            poll:
              interval: 1s
            """) + discovery + "\n" + flows + "\n")

    write("discovery: {enabled: true, refresh: 1s, lookback: 1d}")
    exporter = await exporter_from_file(path, run_poller=True)

    async def up(key: str):
        return value(await scrape(exporter.port), "itnio_recall_flow_up", key_id=key)

    try:
        await wait_for(lambda: _eq(up("2"), 1.0))
        (new,) = listed_flows(1, first_key=3)
        sim.flows[3] = new
        await wait_for(lambda: _eq(up("3"), 1.0))  # appears on its own
        sim.flows[1].created = time.time() - 3 * DAY
        sim.flows[1].status = 2
        await wait_for(lambda: _eq(up("1"), None))  # leaves once ended and out of the window

        write("discovery: {enabled: true, refresh: 1s, lookback: 1d, page_size: 1}")
        assert await exporter.reload() == []
        assert sorted(f.key_id for f in exporter.account().poller.flows) == [2, 3]  # nothing vanishes on reload
        write("discovery: {enabled: false}", "flows: [{key_id: 2}]")
        assert await exporter.reload() == []
        assert [f.key_id for f in exporter.account().poller.flows] == [2]
        samples = await scrape(exporter.port)
        assert value(samples, "itnio_recall_flow_up", key_id="3") is None
    finally:
        await exporter.stop()


async def _eq(awaitable, expected) -> bool:
    return await awaitable == expected


async def test_discovered_flows_are_partitioned_exactly_across_shards(make_exporter, make_sim):
    from exporter.polling.shard import Shard

    sim = await make_sim(flows=listed_flows(30))
    exporters = [
        await make_exporter(sim, run_poller=False, flows=[{"key_id": 7, "name": "static"}],
                            exporter_options={"shard": Shard(i, 3)}, **discovering(page_size=7))
        for i in range(3)
    ]
    for exporter in exporters:
        assert await exporter.account().source(Discovery).run_once()
        await exporter.account().poller.run_cycle()
    shards = [set(watched(exporter)) for exporter in exporters]
    assert all(shards), shards  # each replica has a share
    assert sum(len(s) for s in shards) == 30 and set().union(*shards) == set(range(1, 31))
    for exporter, mine in zip(exporters, shards, strict=True):
        samples = await scrape(exporter.port)
        assert {int(labels["key_id"]) for labels, _ in samples["itnio_recall_flow_up"]} == mine
    # every flow was polled by one replica only: discovered flows once when added and once by the
    # cycle, the static flow by the cycle; with a flow polled by two replicas these would be higher
    expected = {key: 1 if key == 7 else 2 for key in range(1, 31)}
    for _ in range(100):  # the polls of added flows run in the background
        if sum(sim.requests_per_flow.values()) >= sum(expected.values()):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert sim.requests_per_flow == expected


async def test_a_run_cut_short_by_a_reload_is_not_a_success(tmp_path, exporter_from_file, make_sim):
    sim = await make_sim(flows=listed_flows(2))
    path = tmp_path / "config.yaml"

    def write(page_size: int) -> None:
        path.write_text(textwrap.dedent(f"""\
            api: {{base_url: "{sim.base_url}", api_key: demo-key, api_secret: {DEMO_API_SECRET}, timeout: 5s}}
            poll: {{interval: 10m}}
            discovery: {{enabled: true, refresh: 1h, lookback: 1d, page_size: {page_size}}}
            flows: []
            """))

    async def successful():
        return value(await scrape(exporter.port), "itnio_exporter_discovery_last_run_successful")

    write(1)
    exporter = await exporter_from_file(path, run_poller=True)
    await wait_for(lambda: _eq(successful(), 1.0))
    sim.latency = 1.5
    write(2)  # new discovery settings: a new run, which the next reload cuts short
    assert await exporter.reload() == []
    pages = len(sim.page_requests)

    async def asked() -> bool:
        return len(sim.page_requests) > pages

    await wait_for(asked)  # the new run is reading the list
    write(1)
    assert await exporter.reload() == []
    assert await successful() == 0
    sim.latency = 0
    await wait_for(lambda: _eq(successful(), 1.0))  # the run the reload started completes


async def test_an_overfull_page_and_max_flows_cap_the_watched_set_stably(tmp_path, exporter_from_file, make_sim):
    """A vendor that puts 30 records on a page of 10 decides neither how many records are read (10)
    nor how many flows are watched (discovery.max_flows, flows: included)."""
    sim = await make_sim(flows=listed_flows(30))  # newest = highest keyId
    sim.page_overfill = 30  # everything on page 1, whatever size was asked
    path = tmp_path / "config.yaml"

    def write(max_flows: int) -> None:
        path.write_text(textwrap.dedent(f"""\
            api: {{base_url: "{sim.base_url}", api_key: demo-key, api_secret: {DEMO_API_SECRET}}}
            discovery: {{enabled: true, lookback: 1d, page_size: 10, max_flows: {max_flows}}}
            flows: [{{key_id: 1, name: static}}]
            """))

    write(8)
    exporter = await exporter_from_file(path)
    with capture_logs() as logs:
        for _ in range(3):
            assert await exporter.account().source(Discovery).run_once()
            # page 1 read up to its size: 30..21; room for 7 beside the static flow: the newest
            assert watched(exporter) == [1, *range(24, 31)]
        # a newer flow does not push out one already watched (31 flows make two pages of 30: 31..22 and 1)
        (new,) = listed_flows(1, first_key=31)
        new.created = time.time()
        sim.flows[31] = new
        assert await exporter.account().source(Discovery).run_once()
        assert watched(exporter) == [1, *range(24, 31)]
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_discovered_flows") == 8  # 24..30, and 1 that flows: lists too
    assert value(samples, "itnio_exporter_discovered_flows_dropped") == 3  # 31, 23, 22
    assert value(samples, "itnio_exporter_flows") == 8
    assert value(samples, "itnio_api_schema_drift_total", endpoint=QUERY_PAGE, field="data.records",
                 kind="excess_records") == 4  # page 1 of each run
    assert value(samples, "itnio_api_requests_total", endpoint=QUERY_PAGE) == 5  # no pass read again
    events = [entry["event"] for entry in logs]
    assert events.count("discovery_capped") == 1 and "discovery_cap_lifted" not in events
    excess = [e for e in logs if e["event"] == "api_schema_drift" and e["kind"] == "excess_records"]
    assert [e["field"] for e in excess] == ["data.records"]  # logged once, counted every run

    # a reload that makes room takes the dropped ones at once, before the next run
    write(100)
    with capture_logs() as logs:
        assert await exporter.reload() == []
    assert watched(exporter) == [1, *range(22, 32)]
    assert value(await scrape(exporter.port), "itnio_exporter_discovered_flows_dropped") == 0
    assert [entry["event"] for entry in logs].count("discovery_cap_lifted") == 1


def test_max_flows_out_of_bounds_is_a_one_line_error_naming_the_field(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("api: {api_key: k, api_secret: s}\ndiscovery: {enabled: true, max_flows: 0}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    (line,) = str(raised.value).splitlines()
    assert line.startswith("discovery.max_flows:")
