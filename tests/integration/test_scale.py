"""Scale features, checked for correctness (their speed is measured by `make bench`, not here):
sharding, the request-rate token bucket, terminal-flow scheduling and spreading requests."""

import asyncio
import random
import time

import pytest

from exporter.config import ConfigError, Credentials, validate_config
from exporter.metrics.exposition import Exposition
from exporter.metrics.telemetry import Telemetry
from exporter.polling.poller import Poller
from exporter.polling.schedule import spread_offsets
from exporter.polling.shard import Shard, index_from_hostname, stable_hash
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator, static_flows
from exporter.vendor.client import ItnioClient
from exporter.vendor.errors import NotSent
from exporter.vendor.ratelimit import TokenBucket
from tests.conftest import exporter_config, parse_samples, scrape, value
from tests.polling.test_poller import FakeClock


class Flow:
    def __init__(self, key_id):
        self.key_id = key_id


# -- sharding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_any_set_of_flows_is_partitioned_exactly(count):
    rng = random.Random(count)
    for _ in range(20):
        keys = rng.sample(range(1, 10**9), rng.randint(0, 400)) + list(range(1, rng.randint(1, 50)))
        keys = list(dict.fromkeys(keys))
        flows = [Flow(k) for k in keys]
        parts = [Shard(i, count).select(flows) for i in range(count)]
        chosen = [f.key_id for part in parts for f in part]
        assert sorted(chosen) == sorted(keys)  # none missing, none twice
        for i, part in enumerate(parts):  # and each replica keeps the config's order
            assert [f.key_id for f in part] == [k for k in keys if stable_hash(k) % count == i]


def test_the_split_is_stable_and_about_even():
    # Pinned values: a replica restarted, upgraded or on another machine agrees with the others.
    assert [stable_hash(k) for k in (1, 42, 123456789)] == [2212294583, 841265288, 3421780262]
    sizes = [len(Shard(i, 4).select(Flow(k) for k in range(1, 5001))) for i in range(4)]
    assert sum(sizes) == 5000 and all(abs(size - 1250) < 125 for size in sizes), sizes


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError):
        Shard(3, 3)
    with pytest.raises(ValueError):
        Shard(0, 0)
    assert index_from_hostname("itnio-exporter-12") == 12
    assert index_from_hostname("itnio-exporter-2.itnio-exporter.monitoring.svc") == 2
    with pytest.raises(ValueError):
        index_from_hostname("itnio-exporter-7d9f8-x2b4q")


async def test_the_poller_polls_and_exports_only_its_shard_also_after_a_reload(sim, make_exporter):
    config = validate_config(exporter_config(sim))
    extra = static_flows(40, 1, first_key=100)
    seen = []
    for index in range(3):
        published = []

        async def publish(snapshot, published=published):  # this iteration's list, not the last one
            published.append(snapshot)

        poller = Poller(config, _FakeSource(), publish, shard=Shard(index, 3))
        await poller.run_cycle()
        assert {s.key_id for s in published[-1].flows} == {f.key_id for f in config.flows if Shard(index, 3).owns(f.key_id)}
        # set_flows (reload, discovery) applies the shard too
        bigger = config.model_copy(update={"flows": [*config.flows, *[type(config.flows[0])(key_id=f.key_id) for f in extra]]})
        await poller.set_flows(bigger)
        await asyncio.sleep(0.05)
        keys = {s.key_id for s in poller.snapshot.flows}
        assert keys == {f.key_id for f in bigger.flows if Shard(index, 3).owns(f.key_id)}
        seen.extend(keys)
    assert sorted(seen) == sorted(f.key_id for f in bigger.flows)

    exporter = await make_exporter(sim, run_poller=False, exporter_options={"shard": Shard(1, 3)})
    await exporter.poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_shard_index") == 1
    assert value(samples, "itnio_exporter_shards") == 3
    exported = {labels["key_id"] for labels, _ in samples["itnio_recall_flow_up"]}
    assert exported == {str(f.key_id) for f in exporter.config.flows if Shard(1, 3).owns(f.key_id)}


class _FakeSource:
    def __init__(self, statuses=None):
        self.calls = []
        self.statuses = statuses or {}

    async def query_detail(self, key_id, deadline=None, may_send=None):
        from exporter.vendor.model import FlowDetail

        self.calls.append(key_id)
        return FlowDetail(status=self.statuses.get(key_id, 1), recall_interval_minutes=1, recall_num=1,
                          recall_type=0, nodes=())


# -- the token bucket ----------------------------------------------------------------------
def test_token_bucket_with_a_fake_clock():
    clock = FakeClock(100.0)
    bucket = TokenBucket(10, burst=2, clock=clock)
    assert bucket.reserve() == 100.0 and bucket.reserve() == 100.0  # the burst
    # then one every 100 ms, booked in order
    assert [round(bucket.reserve() - 100.0, 6) for _ in range(3)] == [0.1, 0.2, 0.3]
    # a caller whose token would come after its deadline gets none and takes none
    assert bucket.reserve(deadline=100.35) is None
    assert round(bucket.reserve(deadline=100.4) - 100.0, 6) == 0.4
    clock.now = 110.0  # idle for long: refills to the burst, no more
    assert bucket.reserve() == 110.0 and bucket.reserve() == 110.0
    assert round(bucket.reserve() - 110.0, 6) == 0.1
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_rate_is_configurable_and_checked(sim):
    config = validate_config(exporter_config(sim, api={"max_requests_per_second": 2.5}))
    assert config.api.max_requests_per_second == 2.5
    assert validate_config(exporter_config(sim)).api.max_requests_per_second is None
    with pytest.raises(ConfigError) as error:
        validate_config(exporter_config(sim, api={"max_requests_per_second": 0}))
    assert error.value.problems[0].startswith("api.max_requests_per_second:")
    with pytest.raises(ConfigError) as error:
        validate_config(exporter_config(sim, poll={"interval": "1m", "terminal_interval": "30s"}))
    assert error.value.problems == ["poll.terminal_interval: 30s must not be shorter than poll.interval (1m)"]


async def test_the_client_never_sends_faster_than_the_bucket_nor_past_the_deadline(sim):
    client = ItnioClient(
        sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=0.4, max_connections=8,
        max_response_bytes=1 << 20, telemetry=Telemetry(), max_requests_per_second=20,
    )
    try:
        # burst 20, then one per 50 ms: 25 requests cannot all be sent within the first 100 ms of a
        # 200 ms deadline (the last 100 ms, a quarter of the timeout, are left to the attempts)
        deadline = time.monotonic() + 0.2
        outcomes = await asyncio.gather(
            *(client.query_detail(1 + i % 5, deadline) for i in range(25)), return_exceptions=True
        )
        sent = sum(1 for o in outcomes if not isinstance(o, BaseException))
        not_sent = [o for o in outcomes if isinstance(o, NotSent)]
        assert sent == sum(sim.requests_per_flow.values())
        assert 20 <= sent <= 22 and len(not_sent) == 25 - sent
        assert "max_requests_per_second" in not_sent[0].reason
    finally:
        await client.close()


# -- terminal flows and staleness ------------------------------------------------------------
async def test_terminal_flows_are_polled_at_the_terminal_interval_and_never_go_stale_for_it():
    # flows 1..5 have statuses 0..4: 3 (completed) and 4 (cancelled) are terminal
    sim = Simulator(flows=static_flows(5, 2))
    await sim.start()
    clock = FakeClock()
    config = validate_config(
        exporter_config(sim, poll={"interval": "1m", "terminal_interval": "15m", "stale_after": "3m"})
    )
    telemetry = Telemetry()
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry)
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
        await sim.stop()


# -- spreading ------------------------------------------------------------------------------
def test_spread_offsets_cover_the_window_evenly():
    assert spread_offsets(0, 10) == []
    assert spread_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert spread_offsets(3, -1) == [0.0, 0.0, 0.0]


async def test_spread_starts_requests_across_the_interval_and_ends_by_the_deadline():
    sim = Simulator(flows=static_flows(4, 1))
    await sim.start()
    config = validate_config(exporter_config(sim, poll={"interval": "1s", "spread": True}, api={"timeout": "200ms"}))
    telemetry = Telemetry()
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=0.2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry)
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
        await sim.stop()


def test_shard_flags_are_checked_with_one_line_errors(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "--config.file", "x.yaml", *args],
                              capture_output=True, text=True, timeout=30)

    for args, line in [
        (("--shard.count", "3", "--shard.index", "3"), "--shard.index: 3 must be between 0 and 2 (--shard.count 3)"),
        (("--shard.count", "0"), "--shard.count: 0 must be a whole number of at least 1"),
        (("--shard.count", "two"), "--shard.count: 'two' must be a whole number of at least 1"),
        (("--shard.index", "1"), "--shard.index: 1 must be between 0 and 0 (--shard.count 1)"),
        (("--shard.from-hostname", "--shard.index", "0", "--shard.count", "2"),
         "--shard.from-hostname: give either it or --shard.index, not both"),
    ]:
        result = run(*args)
        assert result.returncode == 1 and result.stderr.splitlines() == [line], (args, result.stderr)


async def test_large_answers_are_reused_briefly_and_dropped_with_each_new_snapshot(sim, monkeypatch):
    import gzip as gzip_module

    from exporter.metrics import exposition as exposition_module

    monkeypatch.setattr(exposition_module, "OFFLOAD_SERIES", 10)  # make the simulator's 5 flows "large"
    telemetry = Telemetry()
    config = validate_config(exporter_config(sim))
    exposition = Exposition(telemetry.registry)
    client = ItnioClient(sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=2,
                         max_connections=4, max_response_bytes=1 << 20, telemetry=telemetry)
    poller = Poller(config, client, exposition.publish)
    try:
        await poller.run_cycle()
        plain = exposition.body(openmetrics=False, gzip=False)
        assert exposition.body(openmetrics=False, gzip=False) is plain  # reused within LIVE_TTL
        assert gzip_module.decompress(exposition.body(openmetrics=False, gzip=True)) == plain
        assert b"itnio_api_requests_total{endpoint=\"recallFlow/queryDetail\"} 5.0" in plain
        await poller.run_cycle()  # a new snapshot: fresh counters at once (the 2 terminal flows wait)
        monkeypatch.setattr(exposition_module, "LIVE_TTL", 0.0)  # and re-rendered once it expires
        fresh = exposition.body(openmetrics=False, gzip=False)
        assert b"itnio_api_requests_total{endpoint=\"recallFlow/queryDetail\"} 8.0" in fresh
        assert exposition.body(openmetrics=False, gzip=False) is not fresh
    finally:
        await client.close()


# -- the fast renderer ------------------------------------------------------------------------
def _hostile_snapshot():
    from exporter.polling.snapshot import FlowState, Snapshot
    from exporter.vendor.errors import ApiError, ErrorKind
    from exporter.vendor.model import FlowDetail, NodeDetail

    names = ['plain', 'quote " and \\ backslash', "new\nline", "tab\tand unicode \u00e9\u4e2d\U0001f642", "", "\\n not a newline",
             "\ud83d\ude42".encode("utf-16", "surrogatepass").decode("utf-16"), '"}{,=']
    flows = []
    for i, name in enumerate(names):
        detail = FlowDetail(
            status=[0, 1, 2, 3, 4, 9, -1, 2][i], recall_interval_minutes=[5, 0, 2**40, 7, 1, 3, 60, 9][i],
            recall_num=i, recall_type=i % 3,
            nodes=tuple(NodeDetail(i * 100 + j, None if j % 2 else 7 * j, None if j % 3 else j, (i + j) % 7) for j in range(i)),
        )
        flows.append(FlowState(
            key_id=10**12 + i if i % 2 else i + 1, name=name, detail=detail if i != 4 else None, up=bool(i % 2),
            last_success=[None, 1.8e9, 1800000000.123, 0.0, 1e-7, 12345678.9, 2.5, 1e21][i],
            stale=(i == 6), polls=10**i, errors=(("http", i), ("timeout", 2 * i)),
            last_error=ApiError(ErrorKind.HTTP, "503", "x") if i % 2 else None,
        ))
    return Snapshot(flows=tuple(flows), cycles=3, cycle_started=1800000000.5, cycle_duration=0.123, max_nodes_per_flow=3)


@pytest.mark.parametrize("which", ["hostile", "empty", "large"])
def test_the_fast_renderer_is_byte_for_byte_prometheus_client(which):
    from exporter.metrics.exposition import _render, snapshot_families
    from exporter.metrics.fastrender import render_both
    from exporter.polling.snapshot import Snapshot

    snapshot = {"hostile": _hostile_snapshot, "empty": Snapshot}[which]() if which != "large" else None
    if snapshot is None:
        import benchmarks.bench as bench  # the benchmark's synthetic snapshot: 200 flows, 10 nodes

        snapshot = bench.synthetic_snapshot(200)
    families = snapshot_families(snapshot)
    assert render_both(families) == (_render(families, openmetrics=False), _render(families, openmetrics=True))


def test_the_fast_renderer_leaves_what_it_does_not_handle_to_prometheus_client():
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    from exporter.metrics.fastrender import render_both

    assert render_both([HistogramMetricFamily("h", "d", buckets=[("+Inf", 1)], sum_value=1)]) is None
    assert render_both([GaugeMetricFamily("g", "d", value=1, unit="seconds")]) is None
    timed = GaugeMetricFamily("g", "d", labels=["a"])
    timed.add_metric(["x"], 1, timestamp=5)
    assert render_both([timed]) is None
    signed = GaugeMetricFamily("z", "d", labels=["a"])
    signed.add_metric(["x"], 0.0)
    signed.add_metric(["y"], -0.0)
    text, _ = render_both([signed])
    assert text.endswith(b'z{a="x"} 0.0\nz{a="y"} -0.0\n')


# -- the benchmark harness (its pieces, not its speed) -----------------------------------------
def test_benchmark_calls_per_hour_follow_the_terminal_interval():
    import benchmarks.bench as bench

    result = bench.worker_calls_per_hour(500)
    # 350 completed or cancelled flows polled 4 times an hour (15m), 150 others 60 times
    assert result == {"flows": 500, "calls": 350 * 4 + 150 * 60, "naive": 500 * 60, "mix": result["mix"]}


def test_benchmark_reads_wrk_output():
    import benchmarks.bench as bench

    text = """Running 5s test @ http://127.0.0.1:1/metrics
  1 threads and 4 connections
  Latency Distribution
     50%  805.00us
     75%    1.02ms
     90%    1.30ms
     99%    2.41ms
  23423 requests in 5.00s, 8.95GB read
Requests/sec:   4684.22
"""
    assert bench.parse_wrk(text) == {"tool": "wrk", "rps": 4684.22, "requests": 23423, "p50_ms": 0.805,
                                     "p99_ms": 2.41, "errors": 0}
    errors = text.replace(
        "Requests/sec", "  Socket errors: connect 0, read 0, write 0, timeout 3\n  Non-2xx or 3xx responses: 2\nRequests/sec"
    )
    assert bench.parse_wrk(errors)["errors"] == 5
