"""Call outcomes per node through group/call/detail (exporter/polling/enrich.py), against the simulator."""

import pytest

from exporter.itnio.endpoints import GROUP_CALL_DETAIL
from exporter.simulator import Fault, SimFlow, SimNode, static_flows
from tests.conftest import scrape, value


def node_series(samples, metric):
    return {(labels["key_id"], labels["node_key_id"], labels["task_id"]): v for labels, v in samples.get(metric, [])}


async def test_node_call_outcomes_are_fetched_until_one_fetch_after_the_node_ended(make_exporter, make_sim):
    flow = SimFlow(1, nodes=[SimNode(11, 111, 1, 1), SimNode(12, 112, 1, 0), SimNode(13, 113, 1, 1)])
    other = SimFlow(2, nodes=[SimNode(21, None, None, 1), SimNode(22, 222, 1, 2)])
    sim = await make_sim(flows=[flow, other])
    sim.call_stats[111] = {"numCnt": 10, "callTotal": 12, "success": "8", "fail": 4, "acd": "31.5"}
    exporter = await make_exporter(sim, run_poller=False, enrich={"node_calls": True},
                                   poll={"interval": "5s", "max_nodes_per_flow": 2})
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    # 12 is pending, 13 is beyond the cap, 21 has no task: only 111 and the ended 222 are asked
    assert dict(sim.requests_per_task) == {111: 1, 222: 1}
    assert node_series(samples, "itnio_recall_node_calls") == {
        ("1", "11", "111"): 12.0, ("2", "22", "222"): float(sim.call_data(222)["callTotal"])
    }
    assert value(samples, "itnio_recall_node_numbers", node_key_id="11") == 10
    assert value(samples, "itnio_recall_node_calls_succeeded", node_key_id="11") == 8
    assert value(samples, "itnio_recall_node_calls_failed", node_key_id="11") == 4
    assert value(samples, "itnio_recall_node_call_duration_average_seconds", node_key_id="11") == 31.5
    assert value(samples, "itnio_api_requests_total", endpoint=GROUP_CALL_DETAIL) == 2

    # 11 ends: it is asked once more (the last calls of the round count), then never again
    flow.nodes[0].status = 2
    sim.call_stats[111] = {**sim.call_stats[111], "callTotal": 14, "success": 9, "fail": 5}
    for _ in range(3):
        await exporter.account().poller.run_cycle()
    assert dict(sim.requests_per_task) == {111: 2, 222: 1}
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_node_calls", node_key_id="11") == 14
    assert value(samples, "itnio_recall_node_calls_failed", node_key_id="11") == 5

    # a failing fetch keeps the previous counts; the failure is counted like any other
    flow.nodes[1].status = 1
    sim.call_stats[112] = {"callTotal": 3}
    await exporter.account().poller.run_cycle()
    sim.task_faults[112] = Fault("api", -18)
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_node_calls", node_key_id="12") == 3
    assert value(samples, "itnio_recall_node_numbers", node_key_id="12") is None  # not in the answer
    assert value(samples, "itnio_api_errors_total", endpoint=GROUP_CALL_DETAIL, kind="api", code="-18") == 1

    # a node that leaves takes its series along
    flow.nodes.pop(1)
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_node_calls", node_key_id="12") is None


@pytest.mark.parametrize("code", [-2, -13])
async def test_an_account_error_on_call_detail_stops_the_cycles_enrichment_requests(make_exporter, make_sim, code):
    flows = static_flows(3, 2)
    for flow in flows:
        for node in flow.nodes:
            node.status = 1
    sim = await make_sim(flows=flows)
    for flow in flows:
        for node in flow.nodes:
            sim.task_faults[node.task_id] = Fault("api", code)
    exporter = await make_exporter(sim, run_poller=False, enrich={"node_calls": True},
                                   api={"max_concurrency": 1})
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    # six nodes running, one request: the account error stops the rest; the flows themselves are fine
    assert value(samples, "itnio_api_requests_total", endpoint=GROUP_CALL_DETAIL) == 1
    assert value(samples, "itnio_api_errors_total", endpoint=GROUP_CALL_DETAIL, kind="api", code=str(code)) == 1
    assert all(v == 1 for _, v in samples["itnio_recall_flow_up"])
    assert "itnio_recall_node_calls" not in samples


async def test_a_failing_node_is_logged_when_it_starts_failing_not_every_cycle(make_exporter, make_sim):
    from structlog.testing import capture_logs

    sim = await make_sim(flows=[SimFlow(1, nodes=[SimNode(11, 111, 1, 1), SimNode(12, 112, 1, 1)])])
    sim.task_faults[111] = Fault("api", -18)
    exporter = await make_exporter(sim, run_poller=False, enrich={"node_calls": True})
    with capture_logs() as logs:
        for _ in range(3):
            await exporter.account().poller.run_cycle()
        sim.task_faults[111] = Fault("http", 503)  # fails another way: said once more
        for _ in range(2):
            await exporter.account().poller.run_cycle()
        del sim.task_faults[111]
        await exporter.account().poller.run_cycle()
    events = [(e["event"], e.get("node_key_id"), e.get("code")) for e in logs if e["event"].startswith("node_calls")]
    samples = await scrape(exporter.port)  # asked every cycle, logged far less
    assert value(samples, "itnio_api_errors_total", endpoint=GROUP_CALL_DETAIL, kind="api", code="-18") == 3
    assert events == [("node_calls_failed", 11, "-18"), ("node_calls_failed", 11, "503"),
                      ("node_calls_recovered", 11, None)]
