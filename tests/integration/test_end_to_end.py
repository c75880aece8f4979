"""The exporter and the simulator on loopback, scraped over HTTP like Prometheus does: every series
of the metrics table, and a clean, honest page."""

import asyncio
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from exporter.itnio.model import STATES
from exporter.metrics import catalogue
from exporter.polling.balance import BalancePoller
from exporter.simulator import SimNode
from tests.conftest import fetch, parse_samples, require_tool, scrape, value


async def test_metrics_table_holds_against_the_simulator(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)

    for key, flow in sim.flows.items():
        k = str(key)
        assert value(samples, "itnio_recall_flow_status", key_id=k) == flow.status
        assert value(samples, "itnio_recall_flow_up", key_id=k) == 1
        assert value(samples, "itnio_recall_flow_recall_interval_seconds", key_id=k) == flow.recall_interval * 60
        assert value(samples, "itnio_recall_flow_recall_attempts", key_id=k) == flow.recall_num
        assert value(samples, "itnio_recall_flow_info", key_id=k, name=f"flow-{key}", recall_type="failed") == 1
        for index, state in enumerate(STATES):
            assert value(samples, "itnio_recall_flow_state", key_id=k, state=state) == (1 if index == flow.status else 0)
            expected = sum(1 for node in flow.nodes if node.status == index)
            assert value(samples, "itnio_recall_flow_nodes", key_id=k, state=state) == expected
        assert value(samples, "itnio_recall_flow_state", key_id=k, state="unknown") == 0
        for node in flow.nodes:
            assert value(
                samples,
                "itnio_recall_node_status",
                key_id=k,
                node_key_id=str(node.key_id),
                task_id=str(node.task_id),
                script_id=str(node.script_id),
            ) == node.status
        assert value(samples, "itnio_recall_flow_last_success_timestamp_seconds", key_id=k) > 1.6e9

    assert value(samples, "itnio_api_requests_total", endpoint="recallFlow/queryDetail") == len(sim.flows)
    for code in ("-1", "-2", "-16", "-18", "-22"):
        assert value(samples, "itnio_api_errors_total", endpoint="recallFlow/queryDetail", kind="api", code=code) == 0
    assert value(samples, "itnio_api_request_duration_seconds_count", endpoint="recallFlow/queryDetail") == len(sim.flows)
    assert value(samples, "itnio_exporter_build_info")  == 1
    assert samples["itnio_exporter_build_info"][0][0]["version"]
    assert value(samples, "itnio_exporter_poll_duration_seconds") > 0
    assert value(samples, "itnio_exporter_flows") == len(sim.flows)


async def test_exposition_is_clean_and_honest(sim, make_exporter):
    sim.flows[1].status = 9  # a state outside the documented 0-4
    sim.flows[2].nodes.append(SimNode(2999, None, None, 7))
    sim.flow_faults[3] = __import__("exporter.simulator", fromlist=["Fault"]).Fault("http", 502)
    exporter = await make_exporter(sim, run_poller=False, balance={"enabled": True, "low_threshold": 5})
    await exporter.account().poller.run_cycle()
    assert await exporter.account().source(BalancePoller).poll_once()  # its families pass promtool too
    status, headers, body = await fetch(exporter.port)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    families = list(text_string_to_metric_families(text))
    for family in families:
        # every value that comes from the background poll says so; what the HTTP side counts does not claim it
        entry = catalogue.BY_NAME.get(family.name) or catalogue.BY_NAME[family.name.removesuffix("_info")]
        background = entry.background
        assert ("background poll" in family.documentation) is background, family.name
        for sample in family.samples:
            assert sample.timestamp is None
    samples = parse_samples(text)
    assert value(samples, "itnio_recall_flow_state", key_id="1", state="unknown") == 1
    assert value(samples, "itnio_recall_flow_status", key_id="1") == 9
    assert value(samples, "itnio_recall_flow_nodes", key_id="2", state="unknown") == 1
    assert value(samples, "itnio_recall_node_status", key_id="2", node_key_id="2999", task_id="", script_id="") == 7
    # three requests failed (the first try and api.retries=2 retries), as the simulator recorded; one poll failed
    assert value(samples, "itnio_api_errors_total", kind="http", code="502") == 3 == sim.errors()[("http", "502")]
    assert value(samples, "itnio_api_retries_total", endpoint="recallFlow/queryDetail") == 2
    assert value(samples, "itnio_api_retries_total", endpoint="getBalance") == 0
    assert value(samples, "itnio_recall_flow_poll_errors_total", key_id="3", kind="http") == 1
    assert value(samples, "itnio_recall_flow_up", key_id="3") == 0
    # never succeeded: no data series and no made-up timestamp for flow 3
    assert value(samples, "itnio_recall_flow_status", key_id="3") is None
    assert value(samples, "itnio_recall_flow_last_success_timestamp_seconds", key_id="3") is None

    promtool = require_tool("promtool")
    result = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result
