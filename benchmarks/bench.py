"""`make bench`: the exporter at 500 and 5,000 flows, and /metrics against its baselines.

Every number that is compared with a target is a ratio of two numbers measured in this
run, on this machine, so a busy or slow machine moves both sides alike.

Processes: the simulator (50 ms answers) runs in its own process; each exporter
measurement runs in a fresh worker process (so CPU time and peak RSS are its own); the
load generator is wrk (or, without wrk, an aiohttp client) in yet another process.

    python benchmarks/bench.py            # everything, one table at the end
    python benchmarks/bench.py --quick    # smaller and shorter, to check the harness
    python benchmarks/bench.py --only config   # just the large-config section
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

LATENCY = 0.05
NODES = 10
# api.max_concurrency for the cycles (--concurrency). The ideal cycle is N x 50 ms / this.
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "20"))
SERIES_TARGET = 50_000  # /metrics throughput is compared at this many series
CONFIG_FLOWS = 100_000  # the large config: --config.check and start-up at this many flows
TEXT_HEADERS = {"Accept-Encoding": "identity"}
GZIP_HEADERS = {"Accept-Encoding": "gzip"}


# -- helpers ----------------------------------------------------------------------------------
def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_snapshot(flows: int, nodes: int = NODES, account: str = "default"):
    """An account's snapshot as a cycle over ``flows`` flows of the simulator's static flows leaves it."""
    from exporter.itnio.model import FlowDetail, NodeDetail
    from exporter.polling.snapshot import FlowState, Snapshot

    states = []
    for i in range(flows):
        key = i + 1
        detail = FlowDetail(
            status=i % 5, recall_interval_minutes=5, recall_num=nodes, recall_type=0,
            nodes=tuple(NodeDetail(key * 1000 + j, 7000000 + key * 1000 + j, 100 + j % 3, (i + j) % 5)
                        for j in range(nodes)),
        )
        states.append(FlowState(key, f"flow-{key}", detail=detail, up=True, last_success=1.8e9, polls=1))
    return Snapshot(account=account, flows=tuple(states), cycles=1, cycle_started=1.8e9, cycle_duration=1.0)


def flows_for_series(series: int) -> int:
    from exporter.metrics.exposition import RenderedSnapshot

    per_flow = RenderedSnapshot.of([synthetic_snapshot(10)]).series / 10
    return round(series / per_flow)


# -- load generation (another process) --------------------------------------------------------
async def load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    """Requests per second and latency percentiles from a load generator in another process."""
    wrk = shutil.which("wrk")
    if wrk:
        args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "60s", "--latency"]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        proc = await asyncio.create_subprocess_exec(*args, url, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        return parse_wrk(out.decode())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__)), "loadgen", url, str(seconds), str(connections), json.dumps(headers),
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _found(pattern: str, text: str) -> re.Match[str]:
    """The first match of ``pattern`` in ``text``; ValueError naming it when there is none."""
    match = re.search(pattern, text, re.M)
    if match is None:
        raise ValueError(f"no {pattern!r} in {text[:200]!r}")
    return match


def parse_wrk(text: str) -> dict[str, Any]:
    def ms(value: str) -> float:
        number, unit = _found(r"^([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * _UNITS[unit]

    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    requests = int(_found(r"(\d+) requests in", text).group(1))
    rps = float(_found(r"Requests/sec:\s+([\d.]+)", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    timeouts = re.search(r"timeout (\d+)", text)
    return {
        "tool": "wrk",
        "rps": rps,
        "requests": requests,
        "p50_ms": ms(pct["50"]) if "50" in pct else None,
        "p99_ms": ms(pct["99"]) if "99" in pct else None,
        "errors": (int(errors.group(1)) if errors else 0) + (int(timeouts.group(1)) if timeouts else 0),
    }


async def loadgen(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    """The fallback load generator (run in its own process): aiohttp clients in a loop."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < end:
            started = time.monotonic()
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.monotonic() - started) * 1000)

    started = time.monotonic()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    took = time.monotonic() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None  # noqa: E731
    return {"tool": "aiohttp", "rps": len(latencies) / took, "requests": len(latencies),
            "p50_ms": pick(0.5), "p99_ms": pick(0.99), "errors": errors}


# -- workers (each in a fresh process) --------------------------------------------------------
async def serve_app(app) -> tuple[Any, int]:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def account_names(accounts: int) -> list[str]:
    return [f"account-{i:02d}" for i in range(accounts)]


async def worker_metrics(flows: int, accounts: int, seconds: float, connections: int) -> dict[str, Any]:
    """/metrics throughput with ``accounts`` accounts of ``flows`` flows each: ours, prometheus_client's
    handler, bytes from memory. One account is the single-account form (``default``)."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from exporter.config import Credentials, validate_config
    from exporter.metrics.exposition import _Families, snapshot_families
    from exporter.service import Exporter

    out: dict[str, Any] = {"accounts": accounts, "flows_per_account": flows, "seconds": seconds}
    # ours: the real exporter app, with the snapshots published as the accounts' cycles would
    if accounts == 1:
        config = validate_config({
            "api": {"base_url": "http://127.0.0.1:9", "api_key": "k", "api_secret": "s"},
            "flows": [{"key_id": 1}],
        })
        credentials: Credentials | dict[str, Credentials] = Credentials("k", "s", "bench")
        names = ["default"]
    else:
        names = account_names(accounts)
        config = validate_config({"accounts": [
            {"name": name, "api": {"base_url": "http://127.0.0.1:9", "api_key": name}, "flows": [{"key_id": 1}]}
            for name in names
        ]})
        credentials = {name: Credentials(name, "s", "bench") for name in names}
    snapshots = [synthetic_snapshot(flows, account=name) for name in names]
    exporter = Exporter(config, credentials, listen_address="127.0.0.1:0")
    await exporter.start(run_poller=False)
    started = time.perf_counter()
    # all at once, as accounts ending their cycles together do: the renders coalesce
    await asyncio.gather(*(exporter.exposition.publish(snapshot) for snapshot in snapshots))
    out["render_seconds"] = time.perf_counter() - started
    out["series"] = exporter.exposition.rendered.series
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    body = exporter.exposition.body(openmetrics=False, gzip=False)
    out["bytes"] = len(body)

    # (a) prometheus_client's own aiohttp handler over the same series
    try:
        from prometheus_client.aiohttp import make_aiohttp_handler

        out["baseline_handler"] = "prometheus_client.aiohttp.make_aiohttp_handler"
    except ImportError:  # prometheus_client before 0.24: the same thing by hand
        from collections.abc import Awaitable, Callable

        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
        from prometheus_client.registry import REGISTRY, Collector

        def make_aiohttp_handler(
            registry: Collector = REGISTRY, disable_compression: bool = False
        ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def handler(request: web.Request) -> web.StreamResponse:
                return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
            return handler

        out["baseline_handler"] = "generate_latest per request (hand-written)"
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(snapshot_families(snapshots)))
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry, disable_compression=True))
    baseline_runner, baseline_port = await serve_app(app)

    # (b) the limit: aiohttp returning the same bytes from memory
    async def from_memory(request):
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application()
    app.router.add_get("/metrics", from_memory)
    limit_runner, limit_port = await serve_app(app)

    # All three servers are up in this process (an idle one costs nothing); the loads take
    # turns, twice each for ours and the limit, so a busy moment of the machine hits both.
    urls = {"ours": url, "limit": f"http://127.0.0.1:{limit_port}/metrics",
            "prometheus_client": f"http://127.0.0.1:{baseline_port}/metrics"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    for name in ("ours", "limit", "prometheus_client", "limit", "ours"):
        runs[name].append(await load(urls[name], seconds, connections, TEXT_HEADERS))
    for name, results in runs.items():
        out[name] = max(results, key=lambda r: r["rps"])  # the better of the two turns
        out[name]["turns_rps"] = [round(r["rps"], 1) for r in results]
    out["ours_gzip"] = await load(url, seconds, connections, GZIP_HEADERS)
    await exporter.stop()
    await baseline_runner.cleanup()
    await limit_runner.cleanup()
    return out


async def worker_cycle(sim_url: str, flows: int, cycles: int, shard: tuple[int, int], during: float) -> dict[str, Any]:
    """Poll cycles over ``flows`` flows (all due every cycle); optionally /metrics load during one."""
    from exporter.config import Credentials, validate_config
    from exporter.polling.shard import Shard
    from exporter.service import Exporter
    from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET

    config = validate_config({
        "api": {"base_url": sim_url, "api_key": DEMO_API_KEY, "timeout": "10s", "max_concurrency": CONCURRENCY},
        # every flow due every cycle: the cycle time is compared with polling all N
        "poll": {"interval": "2m", "terminal_interval": "2m"},
        "flows": [{"key_id": key, "name": f"flow-{key}"} for key in range(1, flows + 1)],
    })
    exporter = Exporter(config, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "bench"),
                        listen_address="127.0.0.1:0", shard=Shard(*shard))
    await exporter.start(run_poller=False)
    poller = exporter.account().poller
    assert poller is not None
    polled = len(poller.flows)
    out: dict[str, Any] = {"flows": flows, "polled": polled, "shard": list(shard)}
    durations, renders, cpu = [], [], []
    for _ in range(cycles):
        poller.schedule.forget(keep=())  # back-to-back cycles: every flow is due in each
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        snapshot = await poller.run_cycle()
        cpu.append(cpu_seconds() - cpu0)
        durations.append(snapshot.cycle_duration)  # the polling, up to the merge
        renders.append(time.perf_counter() - wall0 - snapshot.cycle_duration)  # merge and render
        assert all(state.up for state in snapshot.flows), "a poll failed: the numbers would be wrong"
    out["cycle_seconds"] = statistics.median(durations)
    out["render_seconds"] = statistics.median(renders)
    out["cpu_per_1000_polls"] = statistics.median(cpu) / polled * 1000 if polled else 0.0
    out["ideal_seconds"] = polled * LATENCY / CONCURRENCY
    if during:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        poller.schedule.forget(keep=())
        # The load runs over the polling and the render that follows it (in a worker thread).
        cycle = asyncio.create_task(poller.run_cycle())
        await asyncio.sleep(0.2)  # the cycle has started sending
        loaded = await load(url, during, 4, GZIP_HEADERS)
        snapshot = await cycle
        out["during_cycle"] = loaded
        out["during_cycle_seconds"] = snapshot.cycle_duration
    out["peak_rss_mib"] = peak_rss_mib()
    await exporter.stop()
    return out


# -- several accounts -------------------------------------------------------------------------
ACCOUNTS = 20
ACCOUNT_FLOWS = 250
ACCOUNT_TIMEOUT = 2.0  # api.timeout of every account; the hanging simulator answers after it
# poll.interval: each cycle's deadline, so the timing-out account's cycle ends this long after it starts.
ACCOUNT_INTERVAL = 25.0


def account_concurrency() -> int:
    """Each account's api.max_concurrency: all accounts together have as many requests in flight
    as the single-account rows (CONCURRENCY), so both ask the same of the same CPUs."""
    return max(1, CONCURRENCY // ACCOUNTS)


async def worker_simulators(count: int, flows: int) -> None:
    """``count`` simulators (50 ms answers), one per account, each with its own key, and a control
    server: ``POST /hang/1`` makes the last one answer only after 2 x ACCOUNT_TIMEOUT (the client
    gives up first), ``POST /hang/0`` makes it answer in 50 ms again. Prints the simulators' and
    the control's ports as one JSON line, then serves until SIGTERM."""
    import signal

    from aiohttp import web

    from exporter.simulator import Simulator, static_flows

    sims = [Simulator(api_key=f"bench-key-{i}", flows=static_flows(flows, NODES), latency=LATENCY,
                      envelope_variant="code-int", seed=None) for i in range(count)]
    ports = [await sim.start() for sim in sims]

    async def hang(request: web.Request) -> web.Response:
        sims[-1].latency = 2 * ACCOUNT_TIMEOUT if request.match_info["on"] == "1" else LATENCY
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hang/{on}", hang)
    control, control_port = await serve_app(app)
    print(json.dumps({"ports": ports, "control": control_port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await control.cleanup()
    for sim in sims:
        await sim.stop()


async def worker_accounts(sims: dict[str, Any], flows: int, pairs: int) -> dict[str, Any]:
    """Rounds of every account's cycle at once (all flows due in each), each account read from its
    own simulator. Healthy rounds and rounds in which the last account's simulator answers only
    after its api.timeout take turns (``pairs`` of each), so that a busy moment of the machine hits
    both. A round lasts until every account's cycle has ended (the hanging one's at its deadline)."""
    import aiohttp

    from exporter.config import Credentials, validate_config
    from exporter.itnio.endpoints import QUERY_DETAIL
    from exporter.service import Exporter
    from exporter.simulator import DEMO_API_SECRET

    names = account_names(len(sims["ports"]))
    config = validate_config({
        "poll": {"interval": f"{ACCOUNT_INTERVAL:g}s", "terminal_interval": f"{ACCOUNT_INTERVAL:g}s"},
        "accounts": [
            {"name": name, "flows": [{"key_id": key, "name": f"flow-{key}"} for key in range(1, flows + 1)],
             "balance": {"enabled": False},
             "api": {"base_url": f"http://127.0.0.1:{port}", "api_key": f"bench-key-{index}",
                     "timeout": f"{ACCOUNT_TIMEOUT:g}s", "max_concurrency": account_concurrency()}}
            for index, (name, port) in enumerate(zip(names, sims["ports"], strict=True))
        ],
    })
    credentials = {name: Credentials(f"bench-key-{index}", DEMO_API_SECRET, "bench") for index, name in enumerate(names)}
    exporter = Exporter(config, credentials, listen_address="127.0.0.1:0")
    await exporter.start(run_poller=False)
    runtimes = list(exporter.accounts.values())
    registry = exporter.telemetry.registry
    slow = {"account": names[-1], "endpoint": QUERY_DETAIL}
    out: dict[str, Any] = {"accounts": len(runtimes), "flows": flows, "concurrency": account_concurrency(), "rounds": []}
    async with aiohttp.ClientSession() as session:
        for hanging in (False, True) * pairs:
            async with session.post(f"http://127.0.0.1:{sims['control']}/hang/{int(hanging)}") as response:
                assert response.status == 200
            timeouts = registry.get_sample_value("itnio_api_errors_total", {**slow, "kind": "timeout", "code": ""})
            for runtime in runtimes:
                runtime.poller.schedule.forget(keep=())  # back-to-back cycles: every flow is due in each
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            cycles = [asyncio.create_task(runtime.poller.run_cycle()) for runtime in runtimes]
            others = await asyncio.gather(*cycles[:-1])
            wall = time.perf_counter() - wall0
            last = await cycles[-1]
            out["rounds"].append({
                "hanging": hanging,
                "wall_seconds": wall,  # until the others' cycles have ended and are shown
                "cpu_seconds": cpu_seconds() - cpu0,
                "cycle_seconds": [s.cycle_duration for s in others],
                "last_cycle_seconds": last.cycle_duration,
                "down": sum(not state.up for s in others for state in s.flows),
                "last_down": sum(not state.up for state in last.flows),
                "last_timeouts": (registry.get_sample_value(
                    "itnio_api_errors_total", {**slow, "kind": "timeout", "code": ""}) or 0) - (timeouts or 0),
            })
    out["peak_rss_mib"] = peak_rss_mib()
    await exporter.stop()
    return out


# The series an account adds whatever its flows (docs/scaling.md, tests/test_bench.py), by the
# features it has on; every other setting at its default.
OVERHEAD_FEATURES: dict[str, dict[str, Any]] = {
    "flows and balance (the defaults)": {},
    "flows and balance, discovery, node calls": {"discovery": {"enabled": True}, "enrich": {"node_calls": True}},
}


async def account_overhead(features: dict[str, Any], nodes: int = NODES) -> dict[str, Any]:
    """The series of one account in a real exporter's /metrics: two accounts, each read from its own
    simulator (flows of ``nodes`` nodes), after one discovery run, poll cycle and balance read.

    ``fixed``: the account's series without a ``key_id`` label (requests, errors, latency, drift,
    info, back-off, balance, cycles ...); ``per_flow``: those of one flow; ``process``: the
    series without an ``account`` label."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.config import Credentials, validate_config
    from exporter.polling.balance import BalancePoller
    from exporter.polling.discovery import Discovery
    from exporter.service import Exporter
    from exporter.simulator import DEMO_API_SECRET, Simulator, static_flows

    sims = [Simulator(api_key=f"key-{i}", flows=static_flows(i + 1, nodes)) for i in range(2)]
    for sim in sims:
        await sim.start()
    names = ["one", "two"]
    config = validate_config({"accounts": [
        {"name": name, "api": {"base_url": sim.base_url, "api_key": f"key-{i}"},
         "flows": [{"key_id": key} for key in sim.flows], **features}
        for i, (name, sim) in enumerate(zip(names, sims, strict=True))
    ]})
    exporter = Exporter(config, {name: Credentials(f"key-{i}", DEMO_API_SECRET, "bench") for i, name in enumerate(names)},
                        listen_address="127.0.0.1:0")
    try:
        await exporter.start(run_poller=False)
        for runtime in exporter.accounts.values():
            if runtime.config.discovery.enabled:
                assert await runtime.source(Discovery).run_once()
            snapshot = await runtime.poller.run_cycle()
            assert all(state.up for state in snapshot.flows)
            if runtime.config.balance.enabled:
                assert await runtime.source(BalancePoller).poll_once()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{exporter.port}/metrics") as response:
                text = await response.text()
    finally:
        await exporter.stop()
        for sim in sims:
            await sim.stop()
    fixed: dict[str, dict[str, int]] = {name: {} for name in names}
    per_flow: dict[tuple[str, str], int] = {}
    process = 0
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            account = sample.labels.get("account")
            if account is None:
                process += 1
            elif "key_id" in sample.labels:
                flow = (account, sample.labels["key_id"])
                per_flow[flow] = per_flow.get(flow, 0) + 1
            else:
                fixed[account][metric.name] = fixed[account].get(metric.name, 0) + 1
    assert fixed["one"] == fixed["two"], "the fixed series of an account depend on its flows"
    return {"fixed": sum(fixed["one"].values()), "fixed_by_family": fixed["one"], "nodes": nodes,
            "per_flow": max(per_flow.values()), "process": process}


def worker_overhead() -> dict[str, Any]:
    return {label: asyncio.run(account_overhead(features)) for label, features in OVERHEAD_FEATURES.items()}


def worker_calls_per_hour(flows: int) -> dict[str, Any]:
    """Vendor calls in one simulated hour for a realistic mix, with the real Poller and a fake clock."""
    from exporter.config import validate_config
    from exporter.itnio.model import FlowDetail
    from exporter.polling.poller import Poller

    # A day's campaign seen at some hour: most flows are finished.
    mix = [(2, 0.60), (3, 0.10), (1, 0.20), (0, 0.05), (4, 0.05)]  # (status, share)
    statuses: dict[int, int] = {}
    key = 1
    for status, share in mix:
        for _ in range(round(flows * share)):
            statuses[key] = status
            key += 1
    calls = 0

    class Source:
        async def query_detail(self, key_id, deadline=None, may_send=None):
            nonlocal calls
            calls += 1
            return FlowDetail(status=statuses[key_id], recall_interval_minutes=5, recall_num=3, recall_type=0,
                              nodes=())

    config = validate_config({
        "api": {"api_key": "k", "api_secret": "s"},
        "poll": {"interval": "1m", "terminal_interval": "15m"},
        "flows": [{"key_id": k} for k in statuses],
    })
    now = [1.8e9]

    async def publish(snapshot):
        pass

    async def hour() -> None:
        poller = Poller(config, Source(), publish, clock=lambda: now[0])
        for minute in range(60):
            now[0] = 1.8e9 + 60 * minute
            await poller.run_cycle()

    asyncio.run(hour())
    return {"flows": len(statuses), "calls": calls, "naive": len(statuses) * 60,
            "mix": {str(status): share for status, share in mix}}


def write_large_config(path: Path, flows: int, base_url: str = "http://127.0.0.1:9") -> None:
    """A config file with ``flows`` flows, as a large deployment writes it (block style)."""
    lines = ["api:", f"  base_url: {base_url}", "  api_key: bench-key", "  api_secret: bench-secret",
             "poll:", "  interval: 1m", "flows:"]
    for key in range(1, flows + 1):
        lines += [f"  - key_id: {key}", f"    name: campaign-{key:06d}-outbound"]
    path.write_text("\n".join(lines) + "\n")


def worker_config_check(path: str, repeats: int) -> dict[str, Any]:
    """``--config.check`` of a large config as a user runs it: the whole process, median of ``repeats``."""
    walls = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", path, "--config.check"],
                                capture_output=True, text=True, cwd=HERE.parent)
        walls.append(time.perf_counter() - began)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
    return {"check_seconds": statistics.median(walls)}


async def worker_config_start(path: str) -> dict[str, Any]:
    """A fresh process: imports, load and check the file, start serving, until the first snapshot
    is published and /metrics answers (the poller is not run: no vendor needed)."""
    began = time.perf_counter()
    import aiohttp

    from exporter.config import load_config, resolve_credentials
    from exporter.service import Exporter

    imported = time.perf_counter()
    config = load_config(path)
    credentials = resolve_credentials(config.api)
    loaded = time.perf_counter()
    exporter = Exporter(config, credentials, listen_address="127.0.0.1:0")
    await exporter.start(run_poller=False)  # publishes the first snapshot before serving
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{exporter.port}/metrics") as response:
            body = await response.read()
            assert response.status == 200 and b"itnio_recall_flow_up" in body
    served = time.perf_counter()
    out = {"flows": len(config.flows), "import_seconds": imported - began, "load_seconds": loaded - imported,
           "start_seconds": served - loaded, "ready_seconds": served - began, "peak_rss_mib": peak_rss_mib()}
    await exporter.stop()
    return out


def worker_config_loaders(path: str, repeats: int) -> dict[str, Any]:
    """load_config of the same file with each YAML loader: same Config, and how long each takes."""
    from exporter.config import loading

    out: dict[str, Any] = {}
    loaders = {"python": getattr(loading, "PYTHON_LOADER", None), "libyaml": getattr(loading, "C_LOADER", None)}
    configs = []
    for name, loader in loaders.items():
        if loader is None:
            continue
        walls = []
        for _ in range(repeats):
            began = time.perf_counter()
            configs.append(loading.load_config(path, loader=loader))
            walls.append(time.perf_counter() - began)
        out[f"{name}_seconds"] = statistics.median(walls)
    out["same_config"] = all(config == configs[0] for config in configs)
    return out


def run_config_section(flows: int, repeats: int) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        write_large_config(path, flows)
        out: dict[str, Any] = {"flows": flows, "bytes": path.stat().st_size}
        out.update(run_worker("config-check", str(path), str(repeats)))
        starts = [run_worker("config-start", str(path)) for _ in range(repeats)]
        out["start"] = min(starts, key=lambda s: s["ready_seconds"]) if starts else {}
        out["start"]["ready_seconds_median"] = statistics.median(s["ready_seconds"] for s in starts)
        out["loaders"] = run_worker("config-loaders", str(path), str(repeats))
    return out


def report_config(c: dict[str, Any]) -> list[str]:
    s, ld = c["start"], c["loaders"]
    lines = ["", f"A large config: {c['flows']:,} flows ({c['bytes'] / 1e6:.1f} MB of YAML); each in a fresh process, "
             "median of 3", ""]
    lines.append("| step | s |")
    lines.append("|---|---:|")
    lines.append(f"| --config.check (the whole command) | {c['check_seconds']:.2f} |")
    lines.append(f"| start: imports | {s['import_seconds']:.2f} |")
    lines.append(f"| start: read and check the config | {s['load_seconds']:.2f} |")
    lines.append(f"| start: first snapshot published, /metrics answered | {s['start_seconds']:.2f} |")
    lines.append(f"| start: total, until /metrics answers (median) | {s['ready_seconds_median']:.2f} |")
    for name in ("python", "libyaml"):
        if f"{name}_seconds" in ld:
            lines.append(f"| load_config with the {name} YAML loader | {ld[name + '_seconds']:.2f} |")
    lines.append("")
    lines.append(f"(peak RSS at start {s['peak_rss_mib']:.0f} MiB; both loaders give the same Config: "
                 f"{'yes' if ld['same_config'] else 'NO'})")
    return lines


# -- the orchestrator -------------------------------------------------------------------------
def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


FAILING_BYTES = 768 * 1024  # every answer of the failing-flows run, good or not


async def worker_failing(flows: int, cycles: int) -> dict[str, Any]:
    """RSS after cycles of good answers, then of junk (not JSON) and of a gzip bomb, all of
    FAILING_BYTES (the bomb is cut there by api.max_response_bytes). Simulator in this process."""
    from exporter.config import Credentials, validate_config
    from exporter.service import Exporter
    from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator, static_flows

    sim = Simulator(flows=static_flows(flows, NODES), envelope_variant="code-int")
    sim.detail_size = FAILING_BYTES
    await sim.start()
    config = validate_config({
        "api": {"base_url": sim.base_url, "api_key": DEMO_API_KEY, "timeout": "30s", "retries": 0,
                "max_concurrency": CONCURRENCY, "max_response_bytes": FAILING_BYTES + 64 * 1024},
        "poll": {"interval": "2m", "terminal_interval": "2m"},
        "flows": [{"key_id": key, "name": f"flow-{key}"} for key in range(1, flows + 1)],
    })
    exporter = Exporter(config, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "bench"), listen_address="127.0.0.1:0")
    await exporter.start(run_poller=False)
    poller = exporter.account().poller
    assert poller is not None
    out: dict[str, Any] = {"flows": flows, "answer_bytes": FAILING_BYTES}
    for phase, hostile in (("good", None), ("junk", "junk"), ("gzip_bomb", "gzip_bomb")):
        sim.serve_hostile(hostile, FAILING_BYTES if hostile == "junk" else 256 * 1024 * 1024)
        for _ in range(cycles):
            poller.schedule.forget(keep=())
            snapshot = await poller.run_cycle()
        ups = sum(state.up for state in snapshot.flows)
        assert ups == (flows if hostile is None else 0), f"{phase}: {ups} of {flows} flows up"
        out[f"{phase}_rss_mib"] = rss_mib()
    await exporter.stop()
    await sim.stop()
    return out


def run_worker(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(Path(__file__)), *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"worker {args[0]} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


class SimulatorProcess:
    def __init__(self, flows: int):
        self.flows = flows

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", "--listen", "127.0.0.1:0", "--flows", str(self.flows),
             "--nodes", str(NODES), "--latency", str(LATENCY), "--envelope", "code-int"],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None  # stdout=PIPE
        port = _found(r":(\d+) with", self.proc.stdout.readline()).group(1)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class SimulatorsProcess:
    """worker_simulators in another process: {"ports": [...], "control": port}."""

    def __init__(self, count: int, flows: int):
        self.args = [str(count), str(flows)]

    def __enter__(self) -> dict[str, Any]:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "simulators", *self.args],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None  # stdout=PIPE
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short loads (harness check)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="api.max_concurrency of the polling runs (default %(default)s)")
    parser.add_argument("--only", choices=["config", "accounts"], help="run one section only")
    args = parser.parse_args()
    config_flows = CONFIG_FLOWS // 10 if args.quick else CONFIG_FLOWS
    if args.only == "config":
        print(f"# a config of {config_flows} flows ...", file=sys.stderr, flush=True)
        section = run_config_section(config_flows, 3)
        if args.json:
            Path(args.json).write_text(json.dumps({"config": section}, indent=2))
        print("\n".join(report_config(section)).lstrip("\n"))
        return 0
    if args.only == "accounts":
        account_flows = 25 if args.quick else ACCOUNT_FLOWS
        with SimulatorsProcess(ACCOUNTS, account_flows) as sims:
            section = run_worker("accounts", json.dumps(sims), str(account_flows), "1" if args.quick else "3")
        if args.json:
            Path(args.json).write_text(json.dumps({"accounts": section}, indent=2))
        print("\n".join(report_accounts(section, summarise_accounts(section))).lstrip("\n"))
        return 0
    os.environ["BENCH_CONCURRENCY"] = str(args.concurrency)  # for the workers
    globals()["CONCURRENCY"] = args.concurrency
    sizes = (50, 500) if args.quick else (500, 5000)
    seconds = 2.0 if args.quick else 5.0
    series = 5_000 if args.quick else SERIES_TARGET
    shards = 3
    began = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "load_tool": "wrk" if shutil.which("wrk") else "aiohttp"}

    account_flows = 25 if args.quick else ACCOUNT_FLOWS
    print(f"# /metrics at {series} series ...", file=sys.stderr, flush=True)
    results["metrics"] = run_worker("metrics", str(flows_for_series(series)), "1", str(seconds), "4")
    print(f"# /metrics with {ACCOUNTS} accounts of {account_flows} flows ...", file=sys.stderr, flush=True)
    results["metrics_accounts"] = run_worker("metrics", str(account_flows), str(ACCOUNTS), str(2 * seconds), "4")
    for flows in sizes:
        print(f"# cycles at {flows} flows ...", file=sys.stderr, flush=True)
        with SimulatorProcess(flows) as url:
            # long enough to cover the polling and the render after it
            during = (flows * LATENCY / CONCURRENCY) * 1.3 + flows / 1000 if flows == sizes[-1] else 0
            results[f"cycle_{flows}"] = run_worker("cycle", url, str(flows), "3", "0/1", str(during))
            if flows == sizes[-1]:
                results["shards"] = [
                    run_worker("cycle", url, str(flows), "3", f"{i}/{shards}", "0") for i in range(shards)
                ]
    print(f"# {ACCOUNTS} accounts of {account_flows} flows, all answering, then one timing out ...",
          file=sys.stderr, flush=True)
    with SimulatorsProcess(ACCOUNTS, account_flows) as sims:
        results["accounts"] = run_worker("accounts", json.dumps(sims), str(account_flows), "1" if args.quick else "3")
    results["overhead"] = run_worker("overhead")
    results["calls"] = run_worker("calls", str(sizes[-1]))
    failing_flows = 100 if args.quick else 500
    print(f"# {failing_flows} flows answering well, then failing ...", file=sys.stderr, flush=True)
    results["failing"] = run_worker("failing", str(failing_flows), "2" if args.quick else "4")
    print(f"# a config of {config_flows} flows ...", file=sys.stderr, flush=True)
    results["config"] = run_config_section(config_flows, 3)
    results["bench_seconds"] = time.monotonic() - began
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results, sizes))
    return 0


def report(r: dict[str, Any], sizes: tuple[int, int]) -> str:
    m = r["metrics"]
    lines = [f"Machine: {r['machine']}; load generator: {r['load_tool']} (another process), 4 connections", ""]

    def check(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    lines.extend(report_metrics(m))
    ma = r["metrics_accounts"]
    lines.append("")
    lines.extend(report_metrics(ma))
    vs_a = vs_prometheus_client(m)
    vs_b = m["ours"]["rps"] / max(m["limit"]["rps"], 1e-9)
    vs_a_accounts = vs_prometheus_client(ma)
    lines.append("")
    lines.append("Poll cycles (simulator in another process, 50 ms per answer, "
                 f"api.max_concurrency {CONCURRENCY}, {NODES} nodes per flow; median of 3)")
    lines.append("")
    lines.append(f"| flows | cycle s | ideal s (N x 50 ms / {CONCURRENCY}) | ratio | merge+render s "
                 "| CPU s / 1,000 polls | peak RSS MiB |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for flows in sizes:
        c = r[f"cycle_{flows}"]
        ratio = c["cycle_seconds"] / c["ideal_seconds"]
        ratios.append(ratio)
        lines.append(f"| {flows:,} | {c['cycle_seconds']:.2f} | {c['ideal_seconds']:.2f} | {ratio:.2f}x | "
                     f"{c['render_seconds']:.2f} | {c['cpu_per_1000_polls']:.2f} | {c['peak_rss_mib']:.0f} |")
    big = r[f"cycle_{sizes[-1]}"]
    during = big.get("during_cycle", {})
    lines.append("")
    lines.append(f"/metrics (gzip) during a {sizes[-1]:,}-flow cycle: {during.get('rps', 0):.1f} req/s, "
                 f"p50 {_f(during.get('p50_ms'))} ms, p99 {_f(during.get('p99_ms'))} ms")
    lines.append("")
    lines.append(f"Sharding {sizes[-1]:,} flows over {len(r['shards'])} replicas (each run alone, median of 3)")
    lines.append("")
    lines.append("| shard | flows polled | share | cycle s | CPU s per cycle |")
    lines.append("|---|---:|---:|---:|---:|")
    for s in r["shards"]:
        cpu = s["cpu_per_1000_polls"] * s["polled"] / 1000
        lines.append(f"| {s['shard'][0]}/{s['shard'][1]} | {s['polled']:,} | {s['polled'] / s['flows']:.3f} | "
                     f"{s['cycle_seconds']:.2f} | {cpu:.2f} |")
    whole_cpu = big["cpu_per_1000_polls"] * big["polled"] / 1000
    lines.append(f"| unsharded | {big['polled']:,} | 1.000 | {big['cycle_seconds']:.2f} | {whole_cpu:.2f} |")
    accounts = summarise_accounts(r["accounts"])
    lines.extend(report_accounts(r["accounts"], accounts))
    one = r[f"cycle_{sizes[-1]}"]
    if abs(one["ideal_seconds"] - accounts["ideal"]) < 1e-9:  # the same work in one account, same ideal
        lines.append("")
        lines.append(f"Against one account of {sizes[-1]:,} flows in this run (the same requests, the same ideal): "
                     f"{accounts['healthy']['slowest'] / one['cycle_seconds']:.2f}x its cycle time")
    lines.extend(report_overhead(r["overhead"]))
    c = r["calls"]
    lines.append("")
    lines.append(f"Vendor calls per hour, {c['flows']:,} flows (60% completed, 10% cancelled, 20% in progress, "
                 f"5% pending, 5% exception), poll.interval 1m, poll.terminal_interval 15m: "
                 f"{c['calls']:,} against {c['naive']:,} naive ({c['calls'] / c['naive']:.2f}x)")
    f = r["failing"]
    junk_ratio = f["junk_rss_mib"] / f["good_rss_mib"]
    bomb_ratio = f["gzip_bomb_rss_mib"] / f["good_rss_mib"]
    lines.append("")
    lines.append(f"Memory, {f['flows']:,} flows answering {f['answer_bytes'] // 1024} KiB each (simulator in the same "
                 "process), RSS after the cycles of each kind of answer")
    lines.append("")
    lines.append("| answers | RSS MiB | vs good |")
    lines.append("|---|---:|---:|")
    lines.append(f"| good (valid JSON, padded) | {f['good_rss_mib']:.0f} | 1.00x |")
    lines.append(f"| junk (not JSON) | {f['junk_rss_mib']:.0f} | {junk_ratio:.2f}x |")
    lines.append(f"| gzip bomb (256 MiB inflated, cut at the cap) | {f['gzip_bomb_rss_mib']:.0f} | {bomb_ratio:.2f}x |")
    lines.extend(report_config(r["config"]))
    lines.append("")
    lines.append("Targets (ratios from this run):")
    lines.append(f"- /metrics throughput vs prometheus_client's handler: {vs_a:.0f}x (target >= 10x): {check(vs_a >= 10)}")
    lines.append(f"- /metrics throughput vs bytes from memory: {vs_b:.2f}x (target >= 0.7x): {check(vs_b >= 0.7)}")
    lines.append(f"- /metrics throughput vs prometheus_client's handler, {ma['accounts']} accounts of "
                 f"{ma['flows_per_account']:,} flows: {vs_a_accounts:.0f}x (target >= 10x): {check(vs_a_accounts >= 10)}")
    for flows, ratio in zip(sizes, ratios, strict=True):
        lines.append(f"- cycle time at {flows:,} flows vs ideal: {ratio:.2f}x (target <= 1.25x): {check(ratio <= 1.25)}")
    ratio = accounts["healthy"]["slowest"] / accounts["ideal"]
    lines.append(f"- cycle time, {r['accounts']['accounts']} accounts of {r['accounts']['flows']:,} flows, slowest account "
                 f"vs ideal: {ratio:.2f}x (target <= 1.25x): {check(ratio <= 1.25)}")
    ratio = accounts["hanging"]["slowest"] / accounts["healthy"]["slowest"]
    lines.append(f"- cycle time of the other {r['accounts']['accounts'] - 1} accounts with one timing out vs all "
                 f"answering (slowest account): {ratio:.2f}x (target <= 1.1x): {check(ratio <= 1.1)}")
    worst = max(junk_ratio, bomb_ratio)
    lines.append(f"- RSS with every flow failing vs answering well: {worst:.2f}x (target <= 1.2x): {check(worst <= 1.2)}")
    p99 = during.get("p99_ms")
    lines.append(f"- /metrics p99 during a cycle: {_f(p99)} ms (target < 50 ms): "
                 f"{check(p99 is not None and p99 < 50)}")
    loaders = r["config"]["loaders"]
    if "python_seconds" in loaders and "libyaml_seconds" in loaders:
        speedup = loaders["python_seconds"] / max(loaders["libyaml_seconds"], 1e-9)
        lines.append(f"- config load at {r['config']['flows']:,} flows, libyaml vs pure-Python loader: {speedup:.1f}x "
                     f"faster (target >= 2x): {check(speedup >= 2)}")
    lines.append(f"\n(make bench took {r['bench_seconds']:.0f} s)")
    return "\n".join(lines)


def report_metrics(m: dict[str, Any]) -> list[str]:
    accounts = "one account" if m["accounts"] == 1 else f"{m['accounts']} accounts of {m['flows_per_account']:,} flows"
    lines = [f"/metrics at {m['series']:,} series, {accounts} ({m['bytes'] / 1e6:.1f} MB text; "
             f"rendered once per change in {m['render_seconds']:.2f} s)", ""]
    lines.append("| server | req/s (best turn) | p50 ms | p99 ms |")
    lines.append("|---|---:|---:|---:|")
    for name, key in (("itnio-exporter (text)", "ours"), ("itnio-exporter (gzip)", "ours_gzip"),
                      ("(a) prometheus_client aiohttp handler (text)", "prometheus_client"),
                      ("(b) aiohttp, same bytes from memory (text)", "limit")):
        x = m[key]
        lines.append(f"| {name} | {x['rps']:.1f} | {_f(x['p50_ms'])} | {_f(x['p99_ms'])} |")
    return lines


def vs_prometheus_client(m: dict[str, Any]) -> float:
    """Our req/s over prometheus_client's handler's; if that answered nothing during its load, it is
    counted as one answer (so the ratio is a lower bound)."""
    return m["ours"]["rps"] / max(m["prometheus_client"]["rps"], 1 / m["seconds"])


def summarise_accounts(a: dict[str, Any]) -> dict[str, Any]:
    """Per kind of round (healthy, hanging), the medians over its rounds of the other accounts'
    (all but the last) slowest and median cycle, the time until all of them are shown, and CPU."""
    out: dict[str, Any] = {"ideal": a["flows"] * LATENCY / a["concurrency"]}
    for kind, hanging in (("healthy", False), ("hanging", True)):
        rounds = [r for r in a["rounds"] if r["hanging"] == hanging]
        polls = (a["accounts"] - hanging) * a["flows"]
        out[kind] = {
            "slowest": statistics.median(max(r["cycle_seconds"]) for r in rounds),
            "median": statistics.median(statistics.median(r["cycle_seconds"]) for r in rounds),
            "render": statistics.median(r["wall_seconds"] - max(r["cycle_seconds"]) for r in rounds),
            "cpu_per_1000_polls": statistics.median(r["cpu_seconds"] for r in rounds) / polls * 1000,
            "last": statistics.median(r["last_cycle_seconds"] for r in rounds),
            "last_timeouts": statistics.median(r["last_timeouts"] for r in rounds),
            "down": sum(r["down"] for r in rounds),
            "rounds": len(rounds),
        }
    return out


def report_accounts(a: dict[str, Any], s: dict[str, Any]) -> list[str]:
    others, in_flight = a["accounts"] - 1, a["concurrency"] * a["accounts"]
    lines = ["", f"{a['accounts']} accounts of {a['flows']:,} flows, each read from its own simulator (all in another "
             f"process, 50 ms per answer), api.max_concurrency {a['concurrency']} per account ({in_flight} "
             f"requests in flight in all, as in the rows above), every account's cycle at once; rounds with the last "
             f"account's simulator answering only after its api.timeout ({ACCOUNT_TIMEOUT:g} s) take turns with "
             f"healthy ones, medians of {s['healthy']['rounds']} each", ""]
    lines.append(f"| rounds | the other {others}: slowest cycle s | median cycle s | ideal s (N x 50 ms / "
                 f"{a['concurrency']}) | slowest vs ideal | merge+render s | CPU s / 1,000 polls "
                 "| last account: cycle s | its time-outs |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, name in (("healthy", "all answering"), ("hanging", "last account timing out")):
        k = s[kind]
        lines.append(f"| {name} | {k['slowest']:.2f} | {k['median']:.2f} | {s['ideal']:.2f} | "
                     f"{k['slowest'] / s['ideal']:.2f}x | {k['render']:.2f} | {k['cpu_per_1000_polls']:.2f} | "
                     f"{k['last']:.2f} | {k['last_timeouts']:.0f} |")
    down = s["healthy"]["down"] + s["hanging"]["down"]
    if down:
        lines.append(f"\n({down} polls of the other accounts failed: their cycles ran into the deadline)")
    return lines


def report_overhead(o: dict[str, Any]) -> list[str]:
    lines = ["", "Series per account in /metrics (two accounts of 1 and 2 flows of "
             f"{next(iter(o.values()))['nodes']} nodes, after a cycle)", ""]
    lines.append("| features on | series per account (fixed) | per flow | process-wide |")
    lines.append("|---|---:|---:|---:|")
    for label, x in o.items():
        lines.append(f"| {label} | {x['fixed']} | {x['per_flow']} | {x['process']} |")
    return lines


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


WORKERS = ("metrics", "cycle", "accounts", "simulators", "overhead", "calls", "failing", "loadgen", "config-check",
           "config-start", "config-loaders")


def worker_main(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "metrics":
        out = asyncio.run(worker_metrics(int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4])))
    elif kind == "cycle":
        index, count = (int(x) for x in argv[4].split("/"))
        out = asyncio.run(worker_cycle(argv[1], int(argv[2]), int(argv[3]), (index, count), float(argv[5])))
    elif kind == "accounts":
        out = asyncio.run(worker_accounts(json.loads(argv[1]), int(argv[2]), int(argv[3])))
    elif kind == "simulators":
        asyncio.run(worker_simulators(int(argv[1]), int(argv[2])))
        return 0
    elif kind == "overhead":
        out = worker_overhead()
    elif kind == "failing":
        out = asyncio.run(worker_failing(int(argv[1]), int(argv[2])))
    elif kind == "calls":
        out = worker_calls_per_hour(int(argv[1]))
    elif kind == "config-check":
        out = worker_config_check(argv[1], int(argv[2]))
    elif kind == "config-start":
        out = asyncio.run(worker_config_start(argv[1]))
    elif kind == "config-loaders":
        out = worker_config_loaders(argv[1], int(argv[2]))
    elif kind == "loadgen":
        out = asyncio.run(loadgen(argv[1], float(argv[2]), int(argv[3]), json.loads(argv[4])))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in WORKERS:
        sys.exit(worker_main(sys.argv[1:]))
    sys.exit(main())
