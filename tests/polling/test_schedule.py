"""When flows are polled (exporter/polling/schedule.py): terminal flows at their own interval and
never stale for it, and requests spread over the interval."""

import time

import pytest

from exporter.config import (
    Credentials,
    validate_config,
)
from exporter.itnio.client import ItnioClient
from exporter.metrics.exposition import Exposition
from exporter.metrics.telemetry import Telemetry
from exporter.polling.poller import Poller
from exporter.polling.schedule import spread_offsets
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, static_flows
from tests.conftest import exporter_config, parse_samples, value
from tests.helpers import FakeClock


async def test_terminal_flows_are_polled_at_the_terminal_interval_and_never_go_stale_for_it(make_sim):
    # flows 1..5 have statuses 0..4: 3 (completed) and 4 (cancelled) are terminal
    sim = await make_sim(flows=static_flows(5, 2))
    clock = FakeClock()
    config = validate_config(
        exporter_config(sim, poll={"interval": "1m", "terminal_interval": "15m", "stale_after": "3m"})
    )
    telemetry = Telemetry()
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry.account("default"))
    poller = Poller(config, client, exposition.publish, clock=clock)
    try:
        start = clock.now
        for minute in range(31):  # 31 cycles, one a minute (with a little jitter)
            clock.now = start + 60 * minute + (0.3 if minute % 2 else -0.3)
            await poller.run_cycle()
            samples = parse_samples(exposition.body(openmetrics=False, gzip=False).decode())
            for key in "12345":  # every flow is up and shows its data all along
                assert value(samples, "itnio_recall_flow_up", key_id=key) == 1
                assert value(samples, "itnio_recall_flow_status", key_id=key) is not None
        polls = dict(sim.requests_per_flow)
        assert polls == {1: 31, 2: 31, 3: 3, 4: 3, 5: 31}  # minutes 0, 15 and 30
        # a terminal flow that fails is retried at once, and is not stale until stale_after
        # past the terminal poll it missed
        from exporter.simulator import Fault

        sim.flow_faults[3] = Fault("http", 503)
        last_success = clock.now
        for minute in (15, 16, 17, 18):
            clock.now = last_success + 60 * (minute - 15) + 15 * 60
            await poller.run_cycle()
            samples = parse_samples(exposition.body(openmetrics=False, gzip=False).decode())
            assert value(samples, "itnio_recall_flow_up", key_id="3") == 0
            shown = value(samples, "itnio_recall_flow_status", key_id="3") is not None
            assert shown == (minute < 18), minute  # stale after 15m + 3m
        # a flow that leaves its terminal state (reopened) is polled every cycle again
        del sim.flow_faults[3]
        sim.flows[3].status = 1
        clock.now += 60
        await poller.run_cycle()
        before = sim.requests_per_flow[3]
        clock.now += 60
        await poller.run_cycle()
        assert sim.requests_per_flow[3] == before + 1
    finally:
        await client.close()


def test_spread_offsets_cover_the_window_evenly():
    assert spread_offsets(0, 10) == []
    assert spread_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert spread_offsets(3, -1) == [0.0, 0.0, 0.0]


async def test_spread_starts_requests_across_the_interval_and_ends_by_the_deadline(make_sim):
    sim = await make_sim(flows=static_flows(4, 1))
    config = validate_config(exporter_config(sim, poll={"interval": "1s", "spread": True}, api={"timeout": "200ms"}))
    telemetry = Telemetry()
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=0.2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry.account("default"))
    published = []

    async def publish(snapshot):
        published.append(snapshot)

    poller = Poller(config, client, publish)
    try:
        started = time.monotonic()
        snapshot = await poller.run_cycle()
        took = time.monotonic() - started
        assert all(state.up for state in snapshot.flows)
        # four requests started 0.2 s apart over the 0.8 s before the deadline less one timeout
        assert 0.55 < took < 1.5  # the last starts at 0.6 s; the deadline (1 s) bounds the end, give or take a busy loop
        assert snapshot.cycle_duration == pytest.approx(took, abs=0.05)
    finally:
        await client.close()
