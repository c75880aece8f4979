"""The HTTP app (exporter/web/app.py): OpenMetrics and gzip negotiated, health, readiness, the landing
page and the telemetry path; scrapes never call the API."""

import gzip

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.conftest import fetch

OM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_openmetrics_and_gzip_are_negotiated(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.poller.run_cycle()
    _, _, plain = await fetch(exporter.port)

    status, headers, body = await fetch(exporter.port, headers={"Accept": OM_ACCEPT})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    names = {family.name for family in parse_openmetrics(text)}
    assert {"itnio_recall_flow_state", "itnio_recall_flow", "itnio_api_requests", "itnio_exporter_build"} <= names

    status, headers, body = await fetch(exporter.port, headers={"Accept-Encoding": "gzip, deflate"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    # aiohttp's own decoder (one gzip member) reads it too, and the OpenMetrics variant
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://127.0.0.1:{exporter.port}/metrics", headers={"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}
        ) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert (await response.read()).endswith(b"# EOF\n")

    _, headers, body = await fetch(exporter.port, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in headers and body == plain


async def test_scrapes_never_call_the_api(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, balance={"enabled": True})
    await exporter.poller.run_cycle()
    assert await exporter.balance.poll_once()
    before = sum(sim.answers.values()), sum(sim.balance_answers.values())
    for _ in range(5):
        await fetch(exporter.port)
        await fetch(exporter.port, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert (sum(sim.answers.values()), sum(sim.balance_answers.values())) == before


async def test_health_readiness_and_landing_page(sim, make_exporter):
    sim.latency = 0.5
    exporter = await make_exporter(sim)
    status, _, _ = await fetch(exporter.port, "/readyz")
    assert status == 503  # the first cycle is still waiting on the simulator's latency
    status, _, _ = await fetch(exporter.port, "/healthz")
    assert status == 200
    for _ in range(100):
        status, _, _ = await fetch(exporter.port, "/readyz")
        if status == 200:
            break
        await __import__("asyncio").sleep(0.1)
    assert status == 200
    status, headers, body = await fetch(exporter.port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'href="/metrics"' in body and b"itnio-exporter" in body
    await exporter.stop()
    # with the loop stopped, health says so (the exporter object still answers in-process)
    assert not exporter.alive()


async def test_custom_telemetry_path(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, exporter_options={"telemetry_path": "/probe/metrics"})
    assert (await fetch(exporter.port, "/probe/metrics"))[0] == 200
    assert (await fetch(exporter.port, "/metrics"))[0] == 404
    assert b'href="/probe/metrics"' in (await fetch(exporter.port, "/"))[2]
