"""Drift end to end: what the simulator served leniently is exactly what the exporter counted, logged once,
and a loose answer costs nothing but its unreadable node."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from exporter import logs
from exporter.itnio.endpoints import QUERY_DETAIL
from exporter.simulator import SimFlow, SimNode, Simulator
from exporter.simulator.demo import DEMO_DRIFT_FLOW, start_demo_simulator
from tests.conftest import scrape, value


def drift_counts(samples: dict[str, list[tuple[dict[str, str], float]]], endpoint: str) -> Counter[tuple[str, str]]:
    return Counter({
        (labels["field"], labels["kind"]): int(v)
        for labels, v in samples.get("itnio_api_schema_drift_total", [])
        if labels["endpoint"] == endpoint and v
    })


async def test_drift_counters_equal_what_the_simulator_served(make_exporter: Any, make_sim: Any) -> None:
    flows = [SimFlow(key, status=1, nodes=[SimNode(key * 10 + i, 500 + i, 7, i % 3) for i in range(3)]) for key in (1, 2, 3, 4)]
    sim = await make_sim(flows=flows)
    sim.flow_drift[1] = {"string_numbers"}
    sim.flow_drift[2] = {"unreadable_node"}
    sim.flow_drift[3] = {"missing_optional", "unreadable_node"}
    sim.flow_drift[4] = {"unreadable_numbers"}  # recallNum -5, recallInterval "５"
    stream = io.StringIO()
    logs.configure("info", "logfmt", stream)
    exporter = await make_exporter(sim, run_poller=False)
    for _ in range(3):
        await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert drift_counts(samples, QUERY_DETAIL) == sim.drift_served
    assert sim.drift_served[("data.nodeList.keyId", "unreadable_node")] == 6  # two flows, three cycles
    # every flow stayed up with all its readable nodes
    for key in (1, 2, 3, 4):
        assert value(samples, "itnio_recall_flow_up", key_id=str(key)) == 1
        assert sum(v for labels, v in samples["itnio_recall_flow_nodes"] if labels["key_id"] == str(key)) == 3
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_DETAIL, kind="decode", code="") == 0
    # a negative count and full-width digits cost those two series only: never exported as -5 or 5
    for name in ("itnio_recall_flow_recall_attempts", "itnio_recall_flow_recall_interval_seconds"):
        keys = {labels["key_id"] for labels, _ in samples[name]}
        assert keys == {"1", "2", "3"}, name
    assert value(samples, "itnio_recall_flow_status", key_id="4") == 1
    assert sim.drift_served[("data.recallNum", "unreadable")] == 3
    # logged once per flow, field and kind, not every cycle
    lines = [line for line in stream.getvalue().splitlines() if "event=api_schema_drift" in line]
    marks = [(line.split("key_id=")[1].split()[0], line.split("field=")[1].split()[0], line.split("kind=")[1].split()[0])
             for line in lines]
    assert len(marks) == len(set(marks)) == len({(str(k), f, kind) for k, v in sim.flow_drift.items() for f, kind in
                                                  _truth_of(sim, k)})
    assert any(m == ("2", "data.nodeList.keyId", "unreadable_node") for m in marks)
    assert all("level=warning" in line for line in lines if "unreadable_node" in line)


def _truth_of(sim: Simulator, key: int) -> set[tuple[str, str]]:
    from exporter.simulator.server import drifted

    return drifted(sim.flows[key].data(0), sim.flow_drift[key])[1]


async def test_the_demo_shows_drift() -> None:
    from exporter.service import Exporter

    sim, config, credentials = await start_demo_simulator()
    exporter = Exporter(config, credentials, listen_address="127.0.0.1:0")
    try:
        await exporter.start(run_poller=False)
        assert exporter.account().poller is not None
        await exporter.account().poller.run_cycle()
        samples = await scrape(exporter.port)
    finally:
        await exporter.stop()
        await sim.stop()
    counts = drift_counts(samples, QUERY_DETAIL)
    assert counts[("data.status", "string_number")] >= 1 and counts[("data.nodeList.keyId", "unreadable_node")] >= 1
    assert value(samples, "itnio_recall_flow_up", key_id=str(DEMO_DRIFT_FLOW)) == 1
