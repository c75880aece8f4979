"""Secrets stay secret: through every failure path, at debug level, nowhere to be seen."""

import io
import json
import subprocess
import sys
import time

import aiohttp
import structlog

from exporter import logs
from exporter.simulator import Fault, Simulator, static_flows
from exporter.vendor.signing import sign
from tests.conftest import fetch

SECRET_1 = "Kn0wn-s3cret-\u13da-one"
SECRET_2 = "Kn0wn-s3cret-\u13da-two"


def config_text(sim: Simulator, secret_file, extra: str = "") -> str:
    return (
        f"api:\n  base_url: {sim.base_url}\n  api_key: demo-key\n  api_secret_file: {secret_file}\n"
        f"  timeout: 300ms\n  max_concurrency: 2\n  retries: 1\n{extra}"
        "poll:\n  interval: 1s\n  max_backoff: 2s\n"
        "flows:\n" + "".join(f"  - key_id: {k}\n    name: flow-{k}\n" for k in sim.flows)
    )


async def post(port: int, path: str) -> bytes:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}") as response:
            return await response.read()


async def test_no_secret_or_sign_in_logs_metrics_pages_errors_or_reprs(tmp_path, exporter_from_file, make_sim):
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    sim = await make_sim(api_secret=SECRET_1, flows=static_flows(6, 2), hang_seconds=5, timestamp_window=60)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET_1 + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(sim, secret_file))
    exporter = await exporter_from_file(path, enable_lifecycle=True)
    config = exporter.config
    seen: list[str] = []  # everything a user or an attacker could read

    async def look() -> None:
        for headers in ({}, {"Accept": "application/openmetrics-text; version=1.0.0"}):
            seen.append((await fetch(exporter.port, "/metrics", headers))[2].decode())
        for page in ("/", "/healthz", "/readyz"):
            seen.append((await fetch(exporter.port, page))[2].decode())
        for state in exporter.poller.snapshot.flows:
            seen.append(repr(state))
            if state.last_error is not None:
                seen.extend([str(state.last_error), repr(state.last_error), state.last_error.message])

    try:
        await exporter.poller.run_cycle()
        # every kind of failure, one flow each
        sim.flow_faults.update({1: Fault("http", 503), 2: Fault("network"), 3: Fault("decode"),
                                4: Fault("timeout"), 5: Fault("api", -18), 6: Fault("http", 429)})
        await exporter.poller.run_cycle()
        await look()
        sim.flow_faults = {1: Fault("api", -2)}  # the account, not the flow: back-off
        await exporter.poller.run_cycle()
        sim.flow_faults.clear()
        # the vendor's clock runs 10 minutes ahead: -16, then a corrected signature
        sim.clock = lambda: time.time() + 600
        await exporter.poller.run_cycle()
        # the vendor rotates the secret first: -1 and back-off
        sim.api_secret = SECRET_2
        await exporter.poller.run_cycle()
        await look()
        # then the mounted file is rotated: picked up, flows recover
        secret_file.write_text(SECRET_2)
        await exporter.poller.run_cycle()
        assert all(state.up for state in exporter.poller.snapshot.flows)
        # a secret file that vanishes keeps the old secret, with an error logged
        secret_file.unlink()
        await exporter.poller.run_cycle()
        # a reload with the secret typed where it does not belong is refused without echoing it
        path.write_text(config_text(sim, secret_file, f"  api_secret: [{SECRET_2}]\n  proxy_url: 7\n"))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        secret_file.write_text(SECRET_2)
        path.write_text(config_text(sim, secret_file, "  timeout: often\n").replace("  timeout: 300ms\n", ""))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        await look()
        seen.extend([repr(exporter.config), repr(exporter.credentials), str(exporter.credentials),
                     repr(exporter.client), repr(config)])
    finally:
        await exporter.stop()
        structlog.reset_defaults()

    log_text = out.getvalue()
    events = [json.loads(line)["event"] for line in log_text.splitlines()]
    # the failure paths were really taken
    for event in ("flow_poll_failed", "clock_skew_corrected", "account_backoff", "api_secret_reloaded",
                  "api_secret_file_unusable", "reload_failed", "throttled"):
        assert event in events, event
    signs = sim.signs_seen - {""}
    assert len(signs) >= 3  # one per second and secret: a handful in this test
    forbidden = {SECRET_1, SECRET_2, *signs, sign("demo-key", SECRET_1, 0)[:12]}
    for text in [log_text, *seen]:
        for secret in forbidden:
            assert secret not in text, f"{secret!r} leaked into: {text[:300]!r}"
            assert secret.upper() not in text


def test_config_check_never_prints_the_secret(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"api:\n  api_key: k\n  api_secret: {SECRET_1}\n  timeout: soon\n  proxy_url: http://u:{SECRET_2}@proxy:3128\n"
        "flows: [{key_id: 1}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path), "--log.level", "debug"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1 and "api.timeout" in result.stderr
    assert SECRET_1 not in result.stdout + result.stderr and SECRET_2 not in result.stdout + result.stderr
