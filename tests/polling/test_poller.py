"""The poll loop (exporter/polling/poller.py): node removal, last good data until stale, slow flows, a loop that never dies."""

import asyncio
import os

from exporter.config import (
    Credentials,
    validate_config,
)
from exporter.itnio.client import ItnioClient
from exporter.metrics.exposition import Exposition
from exporter.metrics.telemetry import Telemetry
from exporter.polling.poller import Poller
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Fault, Simulator, static_flows
from tests.conftest import exporter_config, parse_samples, scrape, value
from tests.helpers import FakeClock


async def poller_for(sim: Simulator, clock: FakeClock, **sections) -> tuple[Poller, Exposition, ItnioClient]:
    config = validate_config(exporter_config(sim, **sections))
    telemetry = Telemetry()
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(
        sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=config.api.timeout,
        max_connections=config.api.max_concurrency, max_response_bytes=1 << 20, telemetry=telemetry.account("default"),
    )
    return Poller(config, client, exposition.publish, clock=clock), exposition, client


def samples_of(exposition: Exposition):
    return parse_samples(exposition.body(openmetrics=False, gzip=False).decode())


async def test_a_removed_node_disappears_at_the_next_successful_poll(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_node_status", key_id="2", node_key_id="2001") is not None
    removed = sim.flows[2].nodes.pop(1)
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_recall_node_status", key_id="2", node_key_id=str(removed.key_id)) is None
    assert value(samples, "itnio_recall_node_status", key_id="2", node_key_id="2000") is not None
    assert sum(v for labels, v in samples["itnio_recall_flow_nodes"] if labels["key_id"] == "2") == 2


async def test_failed_flow_keeps_last_data_until_stale_then_only_up_and_last_success(sim):
    clock = FakeClock()
    # Flow 4 is cancelled (terminal): poll it every cycle here, as any other flow.
    poller, exposition, client = await poller_for(
        sim, clock, poll={"interval": "10s", "stale_after": "30s", "terminal_interval": "10s"}
    )
    try:
        await poller.run_cycle()
        first_success = clock.now
        sim.flow_faults[4] = Fault("http", 503)
        for elapsed in (10, 20, 30):  # still within stale_after
            clock.now = first_success + elapsed
            await poller.run_cycle()
            samples = samples_of(exposition)
            assert value(samples, "itnio_recall_flow_up", key_id="4") == 0
            assert value(samples, "itnio_recall_flow_status", key_id="4") == sim.flows[4].status
            assert value(samples, "itnio_recall_node_status", key_id="4", node_key_id="4000") is not None
        clock.now = first_success + 31
        await poller.run_cycle()
        samples = samples_of(exposition)
        assert value(samples, "itnio_recall_flow_up", key_id="4") == 0
        assert value(samples, "itnio_recall_flow_last_success_timestamp_seconds", key_id="4") == first_success
        for name in ("itnio_recall_flow_status", "itnio_recall_flow_recall_attempts", "itnio_recall_flow_state",
                     "itnio_recall_flow_nodes", "itnio_recall_node_status"):
            assert all(labels["key_id"] != "4" for labels, _ in samples[name]), name
        assert value(samples, "itnio_recall_flow_poll_errors_total", key_id="4", kind="http") == 4
        # the other flows are untouched
        assert value(samples, "itnio_recall_flow_up", key_id="3") == 1
        assert value(samples, "itnio_recall_flow_status", key_id="3") == sim.flows[3].status
        # recovery brings everything back
        del sim.flow_faults[4]
        clock.now += 10
        await poller.run_cycle()
        samples = samples_of(exposition)
        assert value(samples, "itnio_recall_flow_up", key_id="4") == 1
        assert value(samples, "itnio_recall_flow_status", key_id="4") == sim.flows[4].status
        assert value(samples, "itnio_recall_flow_last_success_timestamp_seconds", key_id="4") == clock.now
    finally:
        await client.close()


async def test_a_hanging_flow_does_not_delay_the_others_beyond_the_timeout(make_sim):
    sim = await make_sim(flows=static_flows(8, 2), hang_seconds=60)
    sim.flow_faults[1] = Fault("timeout")
    clock = FakeClock()
    poller, exposition, client = await poller_for(
        sim, clock, api={"timeout": "1s", "max_concurrency": 2}, poll={"interval": "5s"}
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        snapshot = await poller.run_cycle()
        # One slot is held for the 1 s timeout; the other serves the other seven flows. Far under the 60 s hang.
        assert loop.time() - started < 15
        assert [state.up for state in snapshot.flows] == [False] + [True] * 7
        assert snapshot.flows[0].last_error.kind.value == "timeout"
    finally:
        await client.close()


async def test_the_loop_survives_a_broken_client_and_keeps_its_pace(sim):
    calls = []

    class Broken:
        async def query_detail(self, key_id, deadline=None, may_send=None):
            calls.append(key_id)
            if key_id == 2:
                raise RuntimeError("not an ApiError")
            raise ZeroDivisionError

    config = validate_config(exporter_config(sim, poll={"interval": "200ms"}, api={"timeout": "100ms"}))
    published = []
    three_cycles = asyncio.Event()

    async def publish(snapshot):
        published.append(snapshot)
        if len(published) >= 3:
            three_cycles.set()

    poller = Poller(config, Broken(), publish)
    task = asyncio.create_task(poller.run())
    try:
        await three_cycles.wait()
        assert not task.done()  # still polling after three cycles of nothing but exceptions
    finally:
        task.cancel()
    last = published[-1]
    assert all(not state.up and state.last_error.kind.value == "decode" for state in last.flows)
    assert last.cycles == len(published) and len(calls) >= 3 * len(sim.flows)


async def test_a_failing_flow_keeps_a_bounded_summary_not_the_error_and_its_body(sim):
    """5 flows answering 900 KiB that is not JSON: what the cycle leaves behind is each flow's
    summary and the first 64 KiB of its answer (the cyclic collector is off: nothing is left
    for it to free)."""
    import gc
    import tracemalloc
    import types

    from exporter.itnio.errors import Failure
    from exporter.itnio.model import MAX_ANSWER_BYTES

    clock = FakeClock()
    poller, _, client = await poller_for(sim, clock, poll={"interval": "10s", "terminal_interval": "10s"})
    sim.serve_hostile("junk", 900 * 1024)
    gc.collect()
    gc.disable()
    try:
        await poller.run_cycle()  # connections and the first failures logged: not what is measured
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            clock.now += 10
            snapshot = await poller.run_cycle()
            await asyncio.sleep(0.1)  # the simulator, in this process, finishes writing
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        for state in snapshot.flows:
            error = state.last_error
            assert isinstance(error, Failure) and error.kind.value == "decode" and error.status == 200
            assert state.last_answer is not None and len(state.last_answer.body) == MAX_ANSWER_BYTES
            holders = gc.get_referrers(error)
            assert not any(isinstance(h, types.FrameType | types.TracebackType) for h in holders), holders
    finally:
        gc.enable()
        await client.close()
    per_flow = kept / len(snapshot.flows)
    # Besides the answer: the summary, the flow's state, and its series rendered in both formats,
    # twice (the account's own render, kept for the next join, and the joined /metrics bytes).
    assert per_flow < MAX_ANSWER_BYTES + 20 * 1024, f"{per_flow:.0f} bytes kept per failing flow"


async def test_a_flow_failing_after_good_answers_keeps_no_more_than_it_did(sim):
    """5 flows answer 900 KiB of good JSON, then 900 KiB that is not JSON: the last good data
    a failing flow keeps holds no answer of its own, so failing costs no more than answering
    well (each flow keeps one answer, its last: 64 KiB of it). Counted: what the exporter's
    code allocated and still holds, not the simulator's (in this process)."""
    import gc
    import tracemalloc

    import exporter

    package = os.path.dirname(exporter.__file__)
    exporter_code = (tracemalloc.Filter(True, f"{package}/*"), tracemalloc.Filter(False, f"{package}/simulator/*"))

    def held() -> int:
        return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(exporter_code).statistics("filename"))

    clock = FakeClock()
    poller, _, client = await poller_for(sim, clock, poll={"interval": "10s", "terminal_interval": "10s"})
    sim.detail_size = 900 * 1024
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        kept = {}
        for kind in ("good", "junk"):
            sim.serve_hostile("junk" if kind == "junk" else None, sim.detail_size)
            clock.now += 10
            snapshot = await poller.run_cycle()
            kept[kind] = held()
    finally:
        tracemalloc.stop()
        gc.enable()
        await client.close()
    assert all(not state.up and state.detail is not None for state in snapshot.flows)  # last good data kept
    per_flow = (kept["junk"] - kept["good"]) / len(snapshot.flows)
    assert per_flow < 16 * 1024, f"{per_flow:.0f} bytes more kept per flow failing than answering well"
