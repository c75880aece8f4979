"""It keeps working and loses nothing: back-off, rotation, reload, signals, bounded series."""

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from structlog.testing import capture_logs

from exporter.simulator import DEMO_API_SECRET, Fault, SimNode, Simulator, static_flows
from tests.conftest import fetch, free_port, scrape, value


def write_config(path: Path, sim: Simulator, flows, *, secret_file: Path | None = None, **poll) -> Path:
    secret = f"api_secret_file: {secret_file}" if secret_file else f"api_secret: {DEMO_API_SECRET}"
    poll_lines = "".join(f"\n  {key}: {val}" for key, val in {"interval": "1s", **poll}.items())
    flow_lines = "".join(f"\n  - key_id: {key}\n    name: flow-{key}" for key in flows)
    path.write_text(
        textwrap.dedent(f"""\
        api:
          base_url: {sim.base_url}
          api_key: demo-key
          {secret}
          timeout: 500ms
          max_concurrency: 1
        poll:""") + poll_lines + "\nflows:" + flow_lines + "\n"
    )
    return path


async def test_account_errors_back_off_the_whole_poller_and_a_rotated_secret_recovers(tmp_path, exporter_from_file, make_sim):
    sim = await make_sim(flows=static_flows(5, 1))
    secret = tmp_path / "secret"
    secret.write_text("an-old-secret\n")
    exporter = await exporter_from_file(
        write_config(tmp_path / "c.yaml", sim, range(1, 6), secret_file=secret, max_backoff="5s")
    )
    try:
        with capture_logs() as logs:
            await exporter.account().poller.run_cycle()
        # max_concurrency 1: the first -1 stops the cycle from sending the other four
        assert sim.answers == {("api", "-1"): 1}
        assert exporter.account().poller.backoff == 2.0
        samples = await scrape(exporter.port)
        assert value(samples, "itnio_exporter_backoff_seconds") == 2.0
        assert all(v == 0 for _, v in samples["itnio_recall_flow_up"])
        assert [e["event"] for e in logs].count("account_backoff") == 1

        for expected in (4.0, 5.0):  # doubling, capped at poll.max_backoff; one probe per cycle
            await exporter.account().poller.run_cycle()
            assert exporter.account().poller.backoff == expected
        assert sim.answers == {("api", "-1"): 3}

        # Kubernetes rotates the mounted secret, switching a symlink to a complete new file:
        # picked up before the next cycle, no restart, no settling
        new = tmp_path / "secret.v2"
        new.write_text(DEMO_API_SECRET + "\n")
        (tmp_path / "secret.tmp").symlink_to(new)
        os.replace(tmp_path / "secret.tmp", secret)
        await exporter.account().poller.run_cycle()
        assert exporter.account().poller.backoff == 0
        assert sim.answers[("ok", "")] == 5
        samples = await scrape(exporter.port)
        assert value(samples, "itnio_exporter_backoff_seconds") == 0
        assert all(v == 1 for _, v in samples["itnio_recall_flow_up"])
        # no request was counted that was not sent
        assert value(samples, "itnio_api_requests_total", endpoint="recallFlow/queryDetail") == sum(sim.answers.values()) == 8
    finally:
        await exporter.stop()


async def test_reload_keeps_data_of_flows_that_stay_adds_and_removes_at_once(tmp_path, exporter_from_file, make_sim):
    sim = await make_sim(flows=static_flows(4, 2))
    path = write_config(tmp_path / "c.yaml", sim, [1, 2, 3])
    exporter = await exporter_from_file(path, enable_lifecycle=True)
    try:
        await exporter.account().poller.run_cycle()
        await exporter.account().poller.run_cycle()
        write_config(path, sim, [2, 3, 4])
        status, _, body = await fetch_post(exporter.port, "/-/reload")
        assert status == 200, body
        for _ in range(50):  # the added flow is polled at once, not at the next interval
            samples = await scrape(exporter.port)
            if value(samples, "itnio_recall_flow_up", key_id="4") == 1:
                break
            await asyncio.sleep(0.05)
        assert value(samples, "itnio_recall_flow_up", key_id="4") == 1
        assert value(samples, "itnio_recall_flow_status", key_id="4") == sim.flows[4].status
        assert all(labels["key_id"] != "1" for name in samples for labels, _ in samples[name] if "key_id" in labels)
        assert value(samples, "itnio_recall_flow_polls_total", key_id="2") == 2  # kept, not restarted
        assert value(samples, "itnio_exporter_config_last_reload_successful") == 1
        reloaded_at = value(samples, "itnio_exporter_config_last_reload_success_timestamp_seconds")

        # An invalid config is refused; the running one goes on
        path.write_text(path.read_text().replace("max_concurrency: 1", "max_concurrency: many"))
        status, _, body = await fetch_post(exporter.port, "/-/reload")
        assert status == 500 and b"api.max_concurrency" in body
        await exporter.account().poller.run_cycle()
        samples = await scrape(exporter.port)
        assert value(samples, "itnio_exporter_config_last_reload_successful") == 0
        assert value(samples, "itnio_exporter_config_last_reload_success_timestamp_seconds") == reloaded_at
        assert value(samples, "itnio_recall_flow_polls_total", key_id="2") == 3
        assert value(samples, "itnio_recall_flow_up", key_id="4") == 1
    finally:
        await exporter.stop()


async def fetch_post(port: int, path: str):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, dict(response.headers), await response.read()


async def test_failures_are_logged_on_transitions_not_every_cycle(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, api={"retries": 0})
    sim.flow_faults[2] = Fault("http", 503)
    with capture_logs() as logs:
        for _ in range(4):
            await exporter.account().poller.run_cycle()
        sim.flow_faults[2] = Fault("decode")
        await exporter.account().poller.run_cycle()
        del sim.flow_faults[2]
        await exporter.account().poller.run_cycle()
        await exporter.account().poller.run_cycle()
    failed = [e for e in logs if e["event"] == "flow_poll_failed"]
    assert [(e["key_id"], e["kind"], e["code"]) for e in failed] == [(2, "http", "503"), (2, "decode", "")]
    recovered = [e for e in logs if e["event"] == "flow_recovered"]
    assert [(e["key_id"], e["failed_polls"]) for e in recovered] == [(2, 5)]


async def test_nodes_beyond_the_cap_get_no_series_but_are_counted(sim, make_exporter):
    sim.flows[1].nodes = [SimNode(100 + i, 500 + i, 1, i % 5) for i in range(12)]
    exporter = await make_exporter(sim, run_poller=False, poll={"max_nodes_per_flow": 5})
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert len([1 for labels, _ in samples["itnio_recall_node_status"] if labels["key_id"] == "1"]) == 5
    assert sum(v for labels, v in samples["itnio_recall_flow_nodes"] if labels["key_id"] == "1") == 12
    assert value(samples, "itnio_recall_flow_nodes_dropped", key_id="1") == 7
    assert value(samples, "itnio_recall_flow_nodes_dropped", key_id="2") == 0


async def test_a_cycle_ends_within_the_interval_whatever_the_retries(make_exporter, make_sim):
    sim = await make_sim(flows=static_flows(4, 1), hang_seconds=30)
    for key in (1, 2):
        sim.flow_faults[key] = Fault("timeout")
    exporter = await make_exporter(sim, run_poller=False, api={"timeout": "1s", "retries": 5, "max_concurrency": 2},
                                   poll={"interval": "1500ms"})
    try:
        snapshot = await exporter.account().poller.run_cycle()
    finally:
        await exporter.stop()
    # bounded by the 1.5 s deadline, not 6 attempts x 1 s; generous slack for a loaded machine
    assert snapshot.cycle_duration < 4
    assert [s.up for s in snapshot.flows] == [False, False, True, True]


async def test_sighup_reloads_and_sigterm_exits_0_promptly_with_requests_in_flight(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 1), hang_seconds=30)
    path = write_config(tmp_path / "c.yaml", sim, [1, 2], interval="2s")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(100):
            try:
                if (await fetch(port, "/readyz"))[0] == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        write_config(path, sim, [2, 3], interval="2s")
        proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            samples = await scrape(port)
            if value(samples, "itnio_recall_flow_up", key_id="3") == 1:
                break
            await asyncio.sleep(0.1)
        assert value(samples, "itnio_recall_flow_up", key_id="3") == 1
        assert value(samples, "itnio_recall_flow_up", key_id="1") is None

        # now every request hangs: SIGTERM must cancel them and exit at once
        sim.flow_faults.update({2: Fault("timeout"), 3: Fault("timeout")})
        for _ in range(100):
            if sim.answers[("timeout", "")]:
                break
            await asyncio.sleep(0.05)
        assert sim.answers[("timeout", "")], "no request in flight"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        elapsed = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert elapsed < 2.0, f"took {elapsed:.2f}s to stop"
    assert b"event=reloaded" in err
