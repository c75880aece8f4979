"""The wiring (exporter/service.py): what the exporter it starts exports about its own config, and reloads."""

import asyncio
from pathlib import Path
from typing import Any

import yaml
from structlog.testing import capture_logs

from exporter import reload as reload_module
from exporter.service import ReloadCoordinator
from exporter.simulator import DEMO_API_SECRET, Simulator, static_flows
from exporter.web.webconfig import WebConfig
from tests.conftest import exporter_config, fetch, parse_samples, scrape, value
from tests.helpers import PASSWORD, USERS, basic, write_web_config


async def test_config_info_is_exported(sim: Simulator, make_exporter: Any) -> None:
    exporter = await make_exporter(sim, run_poller=False, api={"tls": {"insecure_skip_verify": True}})
    status, _, body = await fetch(exporter.port, headers={"Accept-Encoding": "identity"})
    assert status == 200
    samples = parse_samples(body.decode())
    assert value(samples, "itnio_exporter_config_info", tls_insecure_skip_verify="true") == 1


async def test_reload_requests_made_during_a_reload_share_one_more() -> None:
    release, runs = asyncio.Event(), list[int]()

    async def slow_reload() -> list[str]:
        runs.append(len(runs) + 1)
        await release.wait()
        return [f"run {len(runs)}"]

    reloads = ReloadCoordinator(slow_reload)
    first = reloads.request()
    await asyncio.sleep(0)  # the first reload starts
    later = [reloads.request() for _ in range(100)]  # SIGHUPs and POSTs while it runs
    withdrawn = reloads.request()
    withdrawn.cancel()
    release.set()
    assert await first == ["run 1"]
    # every later request is answered by the one reload that started after it asked
    assert {tuple(await future) for future in later} == {("run 2",)}
    assert runs == [1, 2]
    # a request whose asker has gone, alone, runs nothing
    release.clear()
    blocked = reloads.request()
    await asyncio.sleep(0)
    alone = reloads.request()
    alone.cancel()
    release.set()
    assert await blocked == ["run 3"]
    await asyncio.sleep(0.05)
    assert runs == [1, 2, 3]


def write_discovery_config(path: Path, sim: Simulator, *, static: list[int], **discovery: str) -> None:
    settings = {"enabled": True, "refresh": "1h", "lookback": "1d", "page_size": 2, **discovery}
    raw = exporter_config(sim, flows=[{"key_id": key} for key in static], discovery=settings)
    raw["api"]["api_secret"] = DEMO_API_SECRET
    path.write_text(yaml.safe_dump(raw))


async def test_a_reload_of_unchanged_files_changes_and_restarts_nothing(tmp_path, make_sim, exporter_from_file) -> None:
    sim = await make_sim(flows=static_flows(3, 1))
    path = tmp_path / "config.yaml"
    write_discovery_config(path, sim, static=[1, 2])
    exporter = await exporter_from_file(path, run_poller=True)
    async with asyncio.timeout(10):
        while value(await scrape(exporter.port), "itnio_exporter_discovery_last_run_successful") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # (it scrapes a live exporter: no event to wait on)
    pages, details, client = len(sim.page_requests), sim.answers.total(), exporter.account().client
    before = value(await scrape(exporter.port), "itnio_exporter_config_last_reload_success_timestamp_seconds")
    path.write_text("# touched: same content, new mtime\n" + path.read_text())
    with capture_logs() as logs:
        for _ in range(20):
            assert await exporter.reload() == []
    await asyncio.sleep(0.2)
    assert len(sim.page_requests) == pages  # no discovery run restarted
    assert sim.answers.total() == details  # no flow polled again
    assert exporter.account().client is client
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_config_last_reload_successful") == 1
    reloaded_at = value(samples, "itnio_exporter_config_last_reload_success_timestamp_seconds")
    assert reloaded_at is not None and before is not None and reloaded_at > before
    reloaded = [entry for entry in logs if entry["event"] == "reloaded"]
    assert len(reloaded) == 20 and {entry["changed"] for entry in reloaded} == {"nothing"}

    # a change outside discovery: and api: keeps the discovery run, and applies at once
    write_discovery_config(path, sim, static=[1, 2, 3])
    assert await exporter.reload() == []
    await asyncio.sleep(0.2)
    assert len(sim.page_requests) == pages and exporter.account().client is client
    assert sorted(flow.key_id for flow in exporter.account().poller.flows) == [1, 2, 3]


async def test_any_failure_while_reloading_is_a_failed_reload(tmp_path, sim, exporter_from_file, monkeypatch) -> None:
    path = tmp_path / "config.yaml"
    raw = exporter_config(sim)
    raw["api"]["api_secret"] = DEMO_API_SECRET
    path.write_text(yaml.safe_dump(raw))
    exporter = await exporter_from_file(path)

    def broken(_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(reload_module, "load_all", broken)
    with capture_logs() as logs:
        problems = await exporter.reload()
    assert problems and all("\n" not in problem for problem in problems)
    assert value(await scrape(exporter.port), "itnio_exporter_config_last_reload_successful") == 0
    (failed,) = [entry for entry in logs if entry["event"] == "reload_failed"]
    assert failed["problems"] == problems and "RecursionError" in problems[0]


async def test_a_reload_applies_a_changed_web_config_and_leaves_an_unchanged_one(
    tmp_path, sim, exporter_from_file, pki
) -> None:
    path = tmp_path / "config.yaml"
    raw = exporter_config(sim)
    raw["api"]["api_secret"] = DEMO_API_SECRET
    path.write_text(yaml.safe_dump(raw))
    web_path = write_web_config(pki.dir, USERS)
    exporter = await exporter_from_file(path, web_config=WebConfig(web_path))
    with capture_logs() as logs:
        assert await exporter.reload() == []
    assert [entry.get("changed") for entry in logs] == ["nothing"]  # no web_config_reloaded either
    web_path.write_text(USERS.replace("alice", "bob"))
    with capture_logs() as logs:
        assert await exporter.reload() == []
    assert logs[-1]["event"] == "reloaded" and logs[-1]["changed"] == "web_config"
    assert (await fetch(exporter.port, headers=basic("alice", PASSWORD)))[0] == 401
    assert (await fetch(exporter.port, headers=basic("bob", PASSWORD)))[0] == 200


async def test_credentials_read_from_old_files_during_a_reload_do_not_replace_the_reloaded_ones(
    tmp_path, sim, exporter_from_file, monkeypatch
) -> None:
    import threading

    from exporter.config import CredentialFiles

    old_secret, new_secret = tmp_path / "old-secret", tmp_path / "new-secret"
    old_secret.write_text(DEMO_API_SECRET)
    new_secret.write_text("the-new-secret")
    path = tmp_path / "config.yaml"
    raw = exporter_config(sim)
    raw["api"]["api_secret_file"] = str(old_secret)
    path.write_text(yaml.safe_dump(raw))
    exporter = await exporter_from_file(path)
    old_secret.write_text("rotated-in-the-old-file\n")  # the next check before a cycle reads it
    reading, release = threading.Event(), threading.Event()
    changed = CredentialFiles.changed

    def slow(self: CredentialFiles, current: Any) -> Any:
        reading.set()
        release.wait(10)
        return changed(self, current)

    monkeypatch.setattr(CredentialFiles, "changed", slow)
    check = asyncio.create_task(exporter.account()._check_credential_files())
    await asyncio.to_thread(reading.wait, 10)
    raw["api"]["api_secret_file"] = str(new_secret)  # meanwhile a reload names another file
    path.write_text(yaml.safe_dump(raw))
    assert await exporter.reload() == []
    release.set()
    await check
    assert exporter.account().credentials.secret() == "the-new-secret"


async def test_an_exporter_that_cannot_listen_sends_nothing_to_the_api(sim: Simulator) -> None:
    import socket

    from exporter.config import Credentials, validate_config
    from exporter.service import Exporter

    config = validate_config(exporter_config(sim, discovery={"enabled": True}, balance={"enabled": True}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = Exporter(config, Credentials("demo-key", DEMO_API_SECRET, "test"), listen_address=f"127.0.0.1:{port}")
        try:
            try:
                await exporter.start()
            except OSError:
                pass
            else:
                raise AssertionError("started on a port another socket holds")
            await asyncio.sleep(0.3)  # what a task started before the bind failed would have sent by now
        finally:
            await exporter.stop()
    assert sim.answers.total() == 0 and not sim.page_requests and not sim.balance_answers


async def test_a_rewritten_secret_file_is_used_once_settled_without_waiting_for_the_next_cycle(
    tmp_path, sim, exporter_from_file
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the-old-secret")
    path = tmp_path / "config.yaml"
    raw = exporter_config(sim)
    raw["api"]["api_secret_file"] = str(secret)
    raw["poll"]["interval"] = "10m"  # no cycle would come to pick it up
    path.write_text(yaml.safe_dump(raw))
    exporter = await exporter_from_file(path)
    secret.write_text(DEMO_API_SECRET)
    await exporter.account()._check_credential_files()  # the check before a cycle sees it, not settled yet
    assert exporter.account().credentials.secret() == "the-old-secret"
    for _ in range(50):
        await asyncio.sleep(0.1)
        if exporter.account().credentials.secret() == DEMO_API_SECRET:
            break
    assert exporter.account().credentials.secret() == DEMO_API_SECRET  # checked again once settled, 2 s on
    await exporter.account().poller.run_cycle()
    assert all(state.up for state in exporter.account().poller.snapshot.flows)
