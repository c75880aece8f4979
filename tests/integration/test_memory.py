"""Memory with every flow failing is no higher than with every flow answering well.

The exporter runs as a real process against the simulator on loopback: a few hundred flows
answer well with large answers (valid JSON padded with whitespace), then every answer is a
body of the same size that is not JSON, then a gzip bomb (cut at api.max_response_bytes). Its
RSS (from /proc) after the failing cycles is compared with its RSS after the good ones. A
failed request kept with its traceback (and the body its frames hold) grew the process by the
body's size per flow.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.itnio.model import TERMINAL_STATUSES
from exporter.simulator.flows import static_flows
from exporter.simulator.server import DEMO_API_KEY, DEMO_API_SECRET, Simulator
from tests.conftest import free_port, scrape, value
from tests.helpers import wait_for_http

pytestmark = pytest.mark.slow

FLOWS = 300
ANSWER_BYTES = 256 * 1024  # every answer, good or junk: 75 MiB over all flows
BOMB_BYTES = 64 * 1024 * 1024  # what the gzip bomb inflates to (64 KiB on the wire)
MAX_RESPONSE_BYTES = 320 * 1024  # where the bomb is cut: about the size of the others


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/<pid>/status")


async def cycles_done(port: int) -> float:
    return value(await scrape(port), "itnio_exporter_poll_cycles_total") or 0.0


async def run_cycles(port: int, count: int, proc: subprocess.Popen) -> None:
    start = await cycles_done(port)
    async with asyncio.timeout(60):
        while await cycles_done(port) < start + count:
            assert proc.poll() is None, "the exporter died"
            await asyncio.sleep(0.2)


async def until_flows(port: int, proc: subprocess.Popen, flows: int, metric: str, **labels: str) -> None:
    """Wait for a non-zero ``metric`` sample of ``flows`` flows: each then holds an answer of the
    phase measured (on a loaded machine, some flows are not sent in a 2 s cycle: a baseline
    taken before they were ever answered holds fewer answers, and is lower by 64 KiB each)."""
    async with asyncio.timeout(60):
        while True:
            samples = (await scrape(port)).get(metric, [])
            if sum(1 for got, v in samples if v and all(got.get(k) == w for k, w in labels.items())) >= flows:
                return
            assert proc.poll() is None, "the exporter died"
            await asyncio.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from /proc (Linux)")
async def test_failing_answers_cost_no_more_memory_than_good_ones(make_sim, tmp_path):
    sim: Simulator = await make_sim(flows=static_flows(FLOWS, 10))
    sim.detail_size = ANSWER_BYTES
    terminal = [flow for flow in sim.flows.values() if flow.status in TERMINAL_STATUSES]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": sim.base_url, "api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET,
                "timeout": "1s", "max_concurrency": 4, "retries": 0, "max_response_bytes": MAX_RESPONSE_BYTES},
        "poll": {"interval": "2s"},
        "flows": [{"key_id": key, "name": f"flow-{key}"} for key in sorted(sim.flows)],
    }))
    port = free_port()
    log = (tmp_path / "exporter.log").open("w")
    command = [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"]
    proc = await asyncio.to_thread(subprocess.Popen, command, stdout=log, stderr=log)
    try:
        await asyncio.to_thread(wait_for_http, port, proc, "/healthz", seconds=30)
        await run_cycles(port, 4, proc)
        await until_flows(port, proc, FLOWS, "itnio_recall_flow_last_success_timestamp_seconds")
        good = rss_kib(proc.pid)

        sim.serve_hostile("junk", ANSWER_BYTES)
        await run_cycles(port, 5, proc)
        # Every flow polled in this phase read the junk and failed (terminal flows wait poll.terminal_interval).
        await until_flows(port, proc, len(sim.flows) - len(terminal), "itnio_recall_flow_poll_errors_total", kind="decode")
        junk = rss_kib(proc.pid)

        await asyncio.to_thread(sim.serve_hostile, "gzip_bomb", BOMB_BYTES)  # compressing takes a while
        await run_cycles(port, 3, proc)
        bomb = rss_kib(proc.pid)
        assert sim.answers[("decode", "")] >= 2 * FLOWS  # every flow failed, most of them more than once
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print(f"RSS: good {good / 1024:.0f} MiB, junk {junk / 1024:.0f} MiB, gzip bomb {bomb / 1024:.0f} MiB")
    assert junk <= 1.2 * good, f"RSS grew from {good} KiB to {junk} KiB with every flow answering junk"
    assert bomb <= 1.2 * good, f"RSS grew from {good} KiB to {bomb} KiB with every flow answering a gzip bomb"
