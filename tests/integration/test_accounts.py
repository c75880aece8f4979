"""Several accounts in one process: two simulators (two hosts) holding the same keyIds, one account
per simulator. What one account meets never reaches the other; reloads compare accounts by name;
shards split (account, key_id) and read each balance once."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import yaml

from exporter import logs
from exporter.polling.balance import BalancePoller
from exporter.polling.shard import Shard
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Fault, Simulator, static_flows
from tests.conftest import accounts_config, scrape, value
from tests.helpers import until


async def two_sims(make_sim, **eu_options) -> dict[str, Simulator]:
    """eu-main and us-resell, each with flows 1-4 (the same keyIds)."""
    eu = await make_sim(flows=static_flows(4, 2), **eu_options)
    us = await make_sim(flows=static_flows(4, 2))
    return {"eu-main": eu, "us-resell": us}


def by_account(samples, metric: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for labels, number in samples.get(metric, []):
        out.setdefault(labels["account"], []).append(number)
    return out


def json_lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


async def test_the_same_key_id_in_two_accounts_is_two_flows_each_labelled(make_sim, make_accounts_exporter):
    sims = await two_sims(make_sim)
    exporter = await make_accounts_exporter(sims)
    await asyncio.gather(*(runtime.poller.run_cycle() for runtime in exporter.accounts.values()))
    samples = await scrape(exporter.port)
    up = {(labels["account"], labels["key_id"]): number for labels, number in samples["itnio_recall_flow_up"]}
    assert up == {(account, str(key)): 1.0 for account in sims for key in range(1, 5)}
    hosts = {labels["account"]: labels["host"] for labels, _ in samples["itnio_account_info"]}
    assert hosts == {name: f"127.0.0.1:{sim.port}" for name, sim in sims.items()}
    # every per-account family is labelled, and nothing about one account is counted under the other
    requests = by_account(samples, "itnio_api_requests_total")
    assert requests == {"eu-main": [4.0], "us-resell": [4.0]}
    assert all(sim.requests_per_flow == {1: 1, 2: 1, 3: 1, 4: 1} for sim in sims.values())
    assert value(samples, "itnio_exporter_build_info") is not None  # process-wide: no account
    assert "account" not in samples["itnio_exporter_build_info"][0][0]


async def test_an_account_answering_minus_1_backs_off_alone_and_its_logs_name_it(make_sim, make_accounts_exporter):
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    sims = await two_sims(make_sim, api_secret="not-what-the-exporter-signs-with")
    exporter = await make_accounts_exporter(
        sims, run_poller=True, poll={"interval": "1s", "max_backoff": "10s"},
        eu_main={"api": {"timeout": "500ms"}}, us_resell={"api": {"timeout": "500ms"}},
    )
    eu, us = exporter.account("eu-main"), exporter.account("us-resell")
    await until(lambda: eu.backoff and us.poller.snapshot.cycles >= 2)
    assert eu.backoff > 0 and us.backoff == 0
    assert not any(state.up for state in eu.poller.snapshot.flows)
    assert all(state.up for state in us.poller.snapshot.flows)
    assert set(sims["eu-main"].answers) == {("api", "-1")}
    assert set(sims["us-resell"].answers) == {("ok", "")} and set(sims["us-resell"].requests_per_flow) == {1, 2, 3, 4}
    samples = await scrape(exporter.port)
    assert by_account(samples, "itnio_exporter_backoff_seconds") == {"eu-main": [eu.backoff], "us-resell": [0.0]}
    assert value(samples, "itnio_api_errors_total", account="eu-main", kind="api", code="-1",
                 endpoint="recallFlow/queryDetail") >= 4
    assert value(samples, "itnio_api_errors_total", account="us-resell", kind="api", code="-1",
                 endpoint="recallFlow/queryDetail") == 0
    assert exporter.ready() and exporter.alive()  # one account failing marks no other, nor the exporter, down
    lines = json_lines(out)
    about_flows = [line for line in lines if line["event"] in ("flow_poll_failed", "account_backoff")]
    assert about_flows and all(line.get("account") == "eu-main" for line in about_flows)
    started = {line["account"] for line in lines if line["event"] == "account_started"}
    assert started == {"eu-main", "us-resell"}


async def test_an_account_that_times_out_does_not_hold_up_another(make_sim, make_accounts_exporter):
    sims = await two_sims(make_sim, latency=1.5)  # every eu answer comes after its 0.5 s timeout
    exporter = await make_accounts_exporter(sims, eu_main={"api": {"timeout": "500ms", "retries": 0}})
    eu, us = exporter.account("eu-main"), exporter.account("us-resell")
    finished: list[str] = []

    async def cycle(name: str) -> None:
        await exporter.account(name).poller.run_cycle()
        finished.append(name)

    await asyncio.gather(cycle("eu-main"), cycle("us-resell"))
    assert finished == ["us-resell", "eu-main"]
    assert all(state.up for state in us.poller.snapshot.flows)
    assert not any(state.up for state in eu.poller.snapshot.flows)
    # the slow account's cycle lasted about its timeout; the other's a fraction of it
    assert us.poller.snapshot.cycle_duration < eu.poller.snapshot.cycle_duration / 2
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_api_errors_total", account="us-resell", kind="timeout",
                 endpoint="recallFlow/queryDetail") == 0
    assert value(samples, "itnio_api_errors_total", account="eu-main", kind="timeout",
                 endpoint="recallFlow/queryDetail") == 4


async def test_a_throttled_account_pauses_alone(make_sim, make_accounts_exporter):
    sims = await two_sims(make_sim)
    for key in range(1, 5):
        sims["eu-main"].flow_faults[key] = Fault("http", 429)
    sims["eu-main"].retry_after = "30"
    exporter = await make_accounts_exporter(sims)
    eu, us = exporter.account("eu-main"), exporter.account("us-resell")
    await asyncio.gather(eu.poller.run_cycle(), us.poller.run_cycle())
    await asyncio.gather(eu.poller.run_cycle(), us.poller.run_cycle())
    assert all(state.up for state in us.poller.snapshot.flows)
    assert set(sims["us-resell"].answers) == {("ok", "")} and set(sims["us-resell"].requests_per_flow) == {1, 2, 3, 4}
    # eu is paused by its Retry-After: its second cycle sends nothing
    assert sum(sims["eu-main"].answers.values()) <= 4 + 2
    assert eu.client is not us.client


async def test_a_reload_keeps_unchanged_accounts_starts_added_and_stops_removed(tmp_path: Path, make_sim,
                                                                             exporter_from_file):
    sims = await two_sims(make_sim)
    apac = await make_sim(flows=static_flows(2, 1, first_key=1))
    path = tmp_path / "config.yaml"
    raw = accounts_config(sims)
    for account in raw["accounts"]:
        account["api"]["api_secret"] = DEMO_API_SECRET
    path.write_text(yaml.safe_dump(raw))
    exporter = await exporter_from_file(path)
    eu = exporter.account("eu-main")
    eu_client = eu.client
    await asyncio.gather(*(runtime.poller.run_cycle() for runtime in exporter.accounts.values()))

    raw["accounts"] = [raw["accounts"][0], {**raw["accounts"][0], "name": "apac",
                                            "api": {**raw["accounts"][0]["api"], "base_url": apac.base_url}}]
    path.write_text(yaml.safe_dump(raw))
    assert await exporter.reload() == []
    assert list(exporter.accounts) == ["eu-main", "apac"]
    assert exporter.account("eu-main") is eu and eu.client is eu_client  # unchanged: the same runtime
    us_requests = sum(sims["us-resell"].requests_per_flow.values())
    await asyncio.gather(*(runtime.poller.run_cycle() for runtime in exporter.accounts.values()))
    samples = await scrape(exporter.port)
    assert set(by_account(samples, "itnio_recall_flow_up")) == {"eu-main", "apac"}
    assert not [labels for family in samples.values() for labels, _ in family if labels.get("account") == "us-resell"]
    await asyncio.sleep(0.2)
    assert sum(sims["us-resell"].requests_per_flow.values()) == us_requests  # the removed host hears nothing more
    assert apac.requests_per_flow  # the added one is polled


async def test_shards_split_account_and_key_id_and_read_each_balance_once(make_sim, make_accounts_exporter):
    sims = {name: await make_sim(flows=static_flows(12, 1)) for name in ("eu-main", "us-resell", "apac")}
    replicas = [
        await make_accounts_exporter(sims, exporter_options={"shard": Shard(index, 2)},
                                     eu_main={"balance": {"enabled": True}}, us_resell={"balance": {"enabled": True}},
                                     apac={"balance": {"enabled": True}})
        for index in range(2)
    ]
    polled: list[tuple[str, int]] = []
    balances: dict[str, int] = {}
    for replica in replicas:
        for name, runtime in replica.accounts.items():
            polled.extend((name, flow.key_id) for flow in runtime.poller.flows)
            if await runtime.source(BalancePoller).poll_once():
                balances[name] = balances.get(name, 0) + 1
    assert sorted(polled) == sorted((name, key) for name in sims for key in range(1, 13))  # each exactly once
    assert balances == dict.fromkeys(sims, 1)  # each balance read by exactly one replica
    assert sum(sum(sim.balance_answers.values()) for sim in sims.values()) == 3
    # the default account keeps the split it had before accounts existed
    assert [key for key in range(1, 13) if Shard(0, 2).owns(key)] == [
        key for key in range(1, 13) if __import__("zlib").crc32(str(key).encode()) % 2 == 0]


async def test_stopping_an_exporter_of_two_accounts_leaves_no_task(make_sim, make_accounts_exporter):
    sims = await two_sims(make_sim)
    exporter = await make_accounts_exporter(sims, run_poller=True, poll={"interval": "1s"},
                                            eu_main={"api": {"timeout": "500ms"}}, us_resell={"api": {"timeout": "500ms"}})
    await until(exporter.ready)
    assert exporter.ready() and exporter.alive()
    await exporter.stop()
    await asyncio.sleep(0)
    left = [task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()
            and any(part in task.get_name() for part in ("poller", "discovery", "balance"))]
    assert not left
    assert DEMO_API_KEY  # the simulators accept the demo key for both accounts
