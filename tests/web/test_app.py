"""The HTTP app (exporter/web/app.py): OpenMetrics and gzip negotiated, health, readiness, the landing
page and the telemetry path; scrapes never call the API."""

import asyncio
import contextlib
import gzip
import time

import aiohttp
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.polling.balance import BalancePoller
from exporter.service import ReloadCoordinator
from exporter.simulator import DEMO_API_SECRET
from exporter.web.app import CLIENT_CHECK_SECONDS, Health, make_app
from exporter.web.webconfig import WebConfig
from tests.conftest import exporter_config, fetch, post, serve
from tests.helpers import PASSWORD, USERS, basic, write_web_config

OM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_openmetrics_and_gzip_are_negotiated(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
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
    await exporter.account().poller.run_cycle()
    assert await exporter.account().source(BalancePoller).poll_once()
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


def flows_config(path, sim, keys) -> None:
    path.write_text(yaml.safe_dump(exporter_config(sim, flows=[{"key_id": key} for key in keys])
                                   | {"api": {**exporter_config(sim)["api"], "api_secret": DEMO_API_SECRET}}))


async def test_post_reload_needs_the_lifecycle_flag_and_the_web_configs_auth(
    tmp_path, sim, exporter_from_file, pki
):
    path = tmp_path / "config.yaml"
    keys = sorted(sim.flows)
    flows_config(path, sim, keys)
    closed = await exporter_from_file(path)
    flows_config(path, sim, keys[:1])
    status, body = await post(closed.port)
    assert status == 403
    assert body.decode().count("\n") == 1 and "--web.enable-lifecycle" in body.decode() and "SIGHUP" in body.decode()
    assert [flow.key_id for flow in closed.account().poller.flows] == keys  # nothing was reloaded

    flows_config(path, sim, keys)
    opened = await exporter_from_file(path, enable_lifecycle=True, web_config=WebConfig(write_web_config(pki.dir, USERS)))
    flows_config(path, sim, keys[:2])
    for headers in ({}, basic("alice", "wrong")):
        assert (await post(opened.port, headers=headers))[0] == 401
    assert [flow.key_id for flow in opened.account().poller.flows] == keys
    assert await post(opened.port, headers=basic("alice", PASSWORD)) == (200, b"OK\n")
    assert [flow.key_id for flow in opened.account().poller.flows] == keys[:2]


async def test_a_post_reload_whose_client_has_gone_adds_no_reload(sim, make_exporter):
    """One reload runs; a POST that arrives meanwhile and gives up is not followed by one more."""
    exporter = await make_exporter(sim, run_poller=False)
    started, release, runs = asyncio.Event(), asyncio.Event(), []

    async def slow_reload() -> list[str]:
        runs.append(time.monotonic())
        started.set()
        await release.wait()
        return []

    reloads = ReloadCoordinator(slow_reload)
    app = make_app(exporter.exposition, Health(lambda: True, lambda: True), reload=reloads.request, lifecycle=True)
    runner, port = await serve(app)
    try:
        first = asyncio.create_task(post(port))
        await started.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(post(port), 0.2)  # the client gives up and closes the connection
        await asyncio.sleep(2 * CLIENT_CHECK_SECONDS + 0.2)  # the server notices
        release.set()
        assert await first == (200, b"OK\n")
        await asyncio.sleep(0.1)
        assert len(runs) == 1
        # a later request still runs a reload of its own
        assert await post(port) == (200, b"OK\n") and len(runs) == 2
    finally:
        await runner.cleanup()
