"""The account balance end to end: a running exporter polling the simulator over loopback, its own
schedule apart from the flows', staleness, reloads, -10/-13, and key and secret files rotated together."""

import asyncio
import os
import textwrap
import time
from pathlib import Path

from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Fault, Simulator, static_flows
from tests.conftest import scrape, value

BALANCE = "getBalance"


async def wait_until(condition, seconds: float = 10.0):
    """Scrape until ``condition(samples)`` holds; the last samples."""
    async with asyncio.timeout(seconds):
        while True:
            samples = await condition()
            if samples is not None:
                return samples
            await asyncio.sleep(0.1)


def scraped(port: int, check):
    async def condition():
        samples = await scrape(port)
        return samples if check(samples) else None
    return condition


def amounts(samples) -> dict[str, float]:
    return {labels["kind"]: v for labels, v in samples.get("itnio_account_balance", [])}


async def test_the_balance_shown_is_the_one_the_simulator_served_and_spent(make_sim, make_exporter):
    sim = await make_sim(flows=static_flows(3, 2), balance=100, gift=20, credit=5, call_cost=0.25)
    exporter = await make_exporter(sim, balance={"enabled": True, "interval": "2s", "low_threshold": 110})
    samples = await wait_until(scraped(exporter.port, lambda s: "itnio_account_balance" in s))
    served = sim.balances_served[-1]
    assert amounts(samples) == {"actual": served["balance"], "gift": served["gift"], "credit": served["credit"]}
    assert value(samples, "itnio_account_balance_low_threshold") == 110
    assert value(samples, "itnio_account_balance_last_success_timestamp_seconds") > 0
    # -10 (insufficient balance) and -13 (user locked) exist from the start on every endpoint in use
    for endpoint in ("recallFlow/queryDetail", BALANCE):
        for code in ("-10", "-13"):
            assert value(samples, "itnio_api_errors_total", endpoint=endpoint, kind="api", code=code) == 0

    # the flows' running nodes place calls: the next reads show less
    sim.place_calls(40)  # 10.0
    samples = await wait_until(scraped(exporter.port, lambda s: amounts(s).get("actual", 100) < served["balance"] - 9))
    assert amounts(samples)["actual"] == sim.balances_served[-1]["balance"]
    assert value(samples, "itnio_api_requests_total", endpoint=BALANCE) == sum(sim.balance_answers.values())


async def test_a_hanging_balance_never_delays_flow_polls(make_sim, make_exporter):
    sim = await make_sim(flows=static_flows(3, 2), hang_seconds=30)
    sim.balance_fault = Fault("timeout")
    exporter = await make_exporter(
        sim, api={"timeout": "500ms", "retries": 0}, poll={"interval": "1s"}, balance={"enabled": True, "interval": "1s"}
    )
    samples = await wait_until(scraped(exporter.port, lambda s: (value(s, "itnio_exporter_poll_cycles_total") or 0) >= 4
                                       and (value(s, "itnio_api_errors_total", endpoint=BALANCE, kind="timeout",
                                                  code="") or 0) >= 2))
    assert all(v == 1 for _, v in samples["itnio_recall_flow_up"]), "every flow polled while the balance hangs"
    assert value(samples, "itnio_api_errors_total", endpoint="recallFlow/queryDetail", kind="timeout", code="") == 0
    assert "itnio_account_balance" not in samples and "itnio_account_balance_last_success_timestamp_seconds" not in samples


async def test_failing_flows_and_an_account_back_off_never_stop_the_balance(make_sim, make_exporter):
    sim = await make_sim(flows=static_flows(3, 2))
    for key_id in sim.flows:
        sim.flow_faults[key_id] = Fault("api", -13)  # user locked, as queryDetail sees it
    exporter = await make_exporter(
        sim, api={"timeout": "500ms", "max_concurrency": 1}, poll={"interval": "1s", "max_backoff": "1h"},
        balance={"enabled": True, "interval": "1s"},
    )
    samples = await wait_until(scraped(exporter.port, lambda s: len(sim.balances_served) >= 3))
    # -13 is an account error: the whole poller backs off (2s, 4s, ...), yet the balance is read every second
    assert value(samples, "itnio_exporter_backoff_seconds") >= 2
    assert sim.answers[("api", "-13")] <= 3, "one request a cycle (the probe), and cycles 2s, 4s ... apart"
    assert all(v == 0 for _, v in samples["itnio_recall_flow_up"])
    assert set(amounts(samples)) == {"actual", "gift", "credit"}


async def test_a_failing_balance_keeps_its_last_value_then_goes_stale_then_recovers(make_sim, make_exporter):
    sim = await make_sim(flows=static_flows(1, 1), balance=42)
    exporter = await make_exporter(sim, api={"timeout": "500ms", "retries": 0},
                                   balance={"enabled": True, "interval": "1s"})
    samples = await wait_until(scraped(exporter.port, lambda s: "itnio_account_balance" in s))
    last_success = value(samples, "itnio_account_balance_last_success_timestamp_seconds")
    sim.balance_fault = Fault("http", 503)
    samples = await wait_until(scraped(
        exporter.port, lambda s: (value(s, "itnio_api_errors_total", endpoint=BALANCE, kind="http", code="503") or 0) >= 1))
    if "itnio_account_balance" in samples:  # within 3 x interval of the last success: still shown
        assert amounts(samples)["actual"] == 42
    # past 3 x balance.interval the balance series go; the time of the last success stays
    samples = await wait_until(scraped(exporter.port, lambda s: "itnio_account_balance" not in s), seconds=8)
    assert value(samples, "itnio_account_balance_last_success_timestamp_seconds") >= last_success
    # what ItnioBalanceUnknown evaluates, as Prometheus would see it on this scrape
    interval = value(samples, "itnio_account_balance_interval_seconds")
    assert interval == 1.0
    assert time.time() - value(samples, "itnio_account_balance_last_success_timestamp_seconds") > 3 * interval
    assert sim.balance_answers[("http", "503")] >= 2
    sim.balance_fault = None
    samples = await wait_until(scraped(exporter.port, lambda s: "itnio_account_balance" in s))
    assert amounts(samples)["actual"] == 42


def write_config(path: Path, sim: Simulator, key_file: Path, secret_file: Path, balance: str) -> None:
    path.write_text(textwrap.dedent(f"""\
        api:
          base_url: {sim.base_url}
          api_key_file: {key_file}
          api_secret_file: {secret_file}
          timeout: 500ms
        poll:
          interval: 1s
          max_backoff: 2s
        """) + balance + "flows:\n" + "".join(f"  - key_id: {k}\n" for k in sim.flows))


def swap(path: Path, text: str) -> None:
    """Replace a file as Kubernetes updates a mounted Secret: a new file moved into place."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


async def test_key_and_secret_files_rotate_together_and_reload_applies_the_balance_config(
    tmp_path, make_sim, exporter_from_file
):
    sim = await make_sim(flows=static_flows(2, 1))
    key_file, secret_file, path = tmp_path / "api-key", tmp_path / "api-secret", tmp_path / "config.yaml"
    key_file.write_text(DEMO_API_KEY + "\n")
    secret_file.write_text(DEMO_API_SECRET + "\n")
    write_config(path, sim, key_file, secret_file, "balance:\n  interval: 1s\n  low_threshold: 10\n")
    exporter = await exporter_from_file(path, run_poller=True)
    await wait_until(scraped(exporter.port, lambda s: "itnio_account_balance" in s
                             and all(v == 1 for _, v in s["itnio_recall_flow_up"])))

    # The vendor issues a new key and secret; the Secret holding both is updated in place.
    sim.api_key, sim.api_secret = "key-two", "secret-two"
    await wait_until(scraped(exporter.port, lambda s: sim.answers[("api", "-1")] and sim.balance_answers[("api", "-1")]))
    swap(key_file, "key-two\n")
    swap(secret_file, "secret-two\n")
    ok_before = sim.balance_answers[("ok", "")]
    samples = await wait_until(scraped(exporter.port, lambda s: sim.balance_answers[("ok", "")] > ok_before
                                       and all(v == 1 for _, v in s["itnio_recall_flow_up"])), seconds=15)
    assert exporter.account().credentials.api_key == "key-two"

    # A reload applies the balance block: a new threshold, then balance off (its series go).
    write_config(path, sim, key_file, secret_file, "balance:\n  interval: 1s\n  low_threshold: 33.5\n")
    assert await exporter.reload() == []
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_account_balance_low_threshold") == 33.5
    write_config(path, sim, key_file, secret_file, "balance:\n  enabled: false\n")
    assert await exporter.reload() == []
    samples = await scrape(exporter.port)
    assert not any(name.startswith("itnio_account_balance") for name in samples)
    answered = sum(sim.balance_answers.values())
    await asyncio.sleep(1.5)
    assert sum(sim.balance_answers.values()) == answered, "no balance request once it is off"
    for text in (key_file.read_text(), secret_file.read_text()):
        assert text.strip() not in repr(exporter.config)
