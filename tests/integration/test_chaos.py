"""Chaos and soak: every fault at once for 200+ cycles while /metrics is scraped.

The simulator records every answer it gave as the exporter must count it, so the
exporter's error counters must equal that record exactly. Bounds stated here:
memory growth under 25 MiB of RSS between cycle 50 and the end; no task left behind;
every flow up again within 10 s of the faults stopping. The exact match assumes the machine
does not starve this process of CPU for longer than the 180 ms request timeout.
"""

import asyncio
import gzip
import resource
from collections import Counter

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import static_flows
from tests.conftest import scrape, value

CYCLES = 200
RSS_GROWTH_BOUND = 25 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.slow
async def test_chaos_soak(make_exporter, make_sim):
    sim = await make_sim(
        flows=static_flows(6, 3),
        hang_seconds=3,
        seed=20261126,
        fault_rates={"timeout": 0.02, "http": 0.03, "network": 0.02, "decode": 0.02, "api": 0.04},
        http_fault_statuses=(500, 502, 503, 429),
        retry_after="0",
        api_fault_codes=(-18, -22, -16, -15, -1, -2, -24),
    )
    tasks_before = set(asyncio.all_tasks())
    exporter = await make_exporter(
        sim,
        # The timeout is short for speed, long enough that only injected hangs reach it: a spurious
        # one (the process starved of CPU for ~180 ms) would be a timeout the simulator never saw.
        api={"timeout": "180ms", "retries": 1, "max_concurrency": 4},
        poll={"interval": "200ms", "max_backoff": "400ms"},
    )
    scrapes, failures = Counter(), []
    stop = asyncio.Event()

    async def scraper() -> None:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        variants = [{}, {"Accept-Encoding": "gzip"}, {"Accept": "application/openmetrics-text; version=1.0.0"}]
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            while not stop.is_set():
                headers = {"Accept-Encoding": "identity", **variants[sum(scrapes.values()) % 3]}
                try:
                    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as response:
                        body = await response.read()
                        if response.status != 200:
                            failures.append(f"status {response.status}")
                        if response.headers.get("Content-Encoding") == "gzip":
                            body = gzip.decompress(body)
                        if "openmetrics" not in response.headers["Content-Type"]:
                            list(text_string_to_metric_families(body.decode()))
                        scrapes[response.status] += 1
                except Exception as exc:  # any failure to answer is what this test is looking for
                    failures.append(repr(exc))
                await asyncio.sleep(0.01)

    scraping = asyncio.create_task(scraper())
    rss_at_50 = None
    try:
        async with asyncio.timeout(100):
            while exporter.exposition.snapshots[0].cycles < CYCLES:
                if rss_at_50 is None and exporter.exposition.snapshots[0].cycles >= 50:
                    rss_at_50 = rss_bytes()
                await asyncio.sleep(0.05)
        rss_growth = rss_bytes() - rss_at_50

        # The faults stop: every flow must come back, none stuck stale or backed off.
        sim.fault_rates.clear()
        async with asyncio.timeout(10):
            while True:
                snapshot = exporter.exposition.snapshots[0]
                if all(state.up and not state.stale for state in snapshot.flows) and exporter.account().poller.backoff == 0:
                    break
                await asyncio.sleep(0.05)
        # Let hung requests from the faults time out, then stop the poller between two cycles, when
        # no request is in flight, so that both sides' counts are final before they are compared.
        await asyncio.sleep(0.5)
        published = asyncio.Event()
        publish = exporter.account().poller.publish

        async def publish_and_tell(snapshot):
            await publish(snapshot)
            published.set()

        exporter.account().poller.publish = publish_and_tell
        await published.wait()
        await exporter.account().poller.stop()  # it is asleep until the next cycle: nothing is in flight
        stop.set()
        await scraping
        samples = await scrape(exporter.port)
    finally:
        stop.set()
        if not scraping.done():
            scraping.cancel()
        await exporter.stop()

    counted = {
        (labels["kind"], labels["code"]): v
        for labels, v in samples["itnio_api_errors_total"]
        if v and labels["endpoint"] == "recallFlow/queryDetail"
    }
    injected = {key: float(n) for key, n in sim.errors().items()}
    assert counted == injected
    assert value(samples, "itnio_api_requests_total", endpoint="recallFlow/queryDetail") == sum(sim.answers.values())
    kinds = {kind for kind, _ in injected}
    assert kinds == {"timeout", "http", "network", "decode", "api"}, "the mix did not cover every fault"
    assert value(samples, "itnio_api_retries_total", endpoint="recallFlow/queryDetail") > 0

    assert not failures, failures[:5]
    assert scrapes[200] >= CYCLES  # a concurrent client was answered all along
    assert rss_growth < RSS_GROWTH_BOUND, f"RSS grew {rss_growth / 2**20:.1f} MiB"

    await sim.stop()
    await asyncio.sleep(0)
    leaked = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert not leaked, leaked
