"""Secrets stay secret: through every failure path, at debug level, nowhere to be seen."""

import io
import json
import subprocess
import sys
import time

import aiohttp
import structlog

from exporter import logs
from exporter.itnio.signing import sign
from exporter.simulator import Fault, Simulator, static_flows
from tests.conftest import fetch
from tests.helpers import until

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
        for state in exporter.account().poller.snapshot.flows:
            seen.append(repr(state))
            if state.last_error is not None:
                seen.extend([str(state.last_error), repr(state.last_error), state.last_error.message])

    try:
        await exporter.account().poller.run_cycle()
        # every kind of failure, one flow each
        sim.flow_faults.update({1: Fault("http", 503), 2: Fault("network"), 3: Fault("decode"),
                                4: Fault("timeout"), 5: Fault("api", -18), 6: Fault("http", 429)})
        await exporter.account().poller.run_cycle()
        await look()
        sim.flow_faults = {1: Fault("api", -2)}  # the account, not the flow: back-off
        await exporter.account().poller.run_cycle()
        sim.flow_faults.clear()
        # the vendor's clock runs 10 minutes ahead: -16, then a corrected signature
        sim.clock = lambda: time.time() + 600
        await exporter.account().poller.run_cycle()
        # the vendor rotates the secret first: -1 and back-off
        sim.api_secret = SECRET_2
        await exporter.account().poller.run_cycle()
        await look()
        # then the mounted file is rotated: picked up once settled, flows recover
        secret_file.write_text(SECRET_2)
        await exporter.account().poller.run_cycle()
        await until(lambda: exporter.account().credentials.secret() == SECRET_2)
        await exporter.account().poller.run_cycle()
        assert all(state.up for state in exporter.account().poller.snapshot.flows)
        # a secret file that vanishes keeps the old secret, with an error logged
        secret_file.unlink()
        await exporter.account().poller.run_cycle()
        await until(lambda: "api_secret_file_unusable" in out.getvalue())
        # a reload with the secret typed where it does not belong is refused without echoing it
        path.write_text(config_text(sim, secret_file, f"  api_secret: [{SECRET_2}]\n  proxy_url: 7\n"))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        secret_file.write_text(SECRET_2)
        path.write_text(config_text(sim, secret_file, "  timeout: often\n").replace("  timeout: 300ms\n", ""))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        await look()
        seen.extend([repr(exporter.config), repr(exporter.account().credentials), str(exporter.account().credentials),
                     repr(exporter.account().client), repr(config)])
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


# -- passwords in URLs, and values typed where a secret belongs ---------------------------------

MARK = "Mrk9pw"  # a distinctive password: it must appear nowhere the exporter prints or serves

# Every string or number field of the config, as (section path, field).
FIELDS = [
    (("api",), "base_url"), (("api",), "api_key"), (("api",), "api_secret"), (("api",), "api_secret_file"),
    (("api",), "timeout"), (("api",), "max_concurrency"), (("api",), "max_response_bytes"), (("api",), "retries"),
    (("api",), "proxy_url"), (("api",), "max_requests_per_second"), (("api",), "timezone"),
    (("api", "tls"), "ca_file"), (("api", "tls"), "insecure_skip_verify"),
    (("poll",), "interval"), (("poll",), "stale_after"), (("poll",), "max_backoff"),
    (("poll",), "max_nodes_per_flow"), (("poll",), "terminal_interval"), (("poll",), "spread"),
    (("discovery",), "enabled"), (("discovery",), "lookback"), (("discovery",), "refresh"),
    (("discovery",), "task_name"), (("discovery",), "page_size"), (("enrich",), "node_calls"),
    (("flows", 0), "key_id"), (("flows", 0), "name"),
]
URLS = [f"https://user:{MARK}@host.example/p", f"http://user:{MARK}@h", f"https://u:{MARK} x@h y", f"ftp://:{MARK}@h"]
# Wrongly typed values of the secret fields: never echoed.
SECRET_VALUES = {"api_key": [98765432, [98765432], {"k": 98765432}, 9.8765432],
                 "api_secret": [98765432, [98765432], {"k": 98765432}, True],
                 "api_secret_file": [98765432, [98765432]]}


def _raw(where: tuple, field: str, value) -> dict:
    raw: dict = {"api": {"api_key": "k", "api_secret": "s", "tls": {}}, "poll": {}, "discovery": {}, "enrich": {},
                 "flows": [{"key_id": 1}]}
    node = raw
    for part in where:
        node = node[part]
    node[field] = value
    return raw


def _check(tmp_path, capsys, raw: dict) -> str:
    """--config.check's whole output (in-process: the same code as the command, a hundred times faster)."""
    from exporter.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw))
    try:
        main(["--config.file", str(path), "--config.check", "--log.level", "debug"])
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr()
    return out.out + out.err


def test_config_check_echoes_no_url_password_in_any_field_nor_a_wrongly_typed_secret(tmp_path, capsys):
    checked = 0
    for where, field in FIELDS:
        for url in URLS:
            text = _check(tmp_path, capsys, _raw(where, field, url))
            assert MARK not in text, f"{'.'.join(map(str, where))}.{field} = {url!r} printed: {text!r}"
            checked += 1
        for value in SECRET_VALUES.get(field, []):
            text = _check(tmp_path, capsys, _raw(where, field, value))
            assert f"api.{field}" in text and "98765432" not in text and "8765432" not in text, text
    assert checked == len(FIELDS) * len(URLS)
    # all at once, as a command
    raw = _raw(("api",), "base_url", URLS[2])
    raw["api"].update(proxy_url=URLS[0], api_key=98765432, api_secret=[98765432], timezone=URLS[1])
    raw["api"]["tls"]["ca_file"] = URLS[3]
    raw["discovery"]["task_name"] = 98765432
    path = tmp_path / "all.yaml"
    path.write_text(json.dumps(raw))
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") >= 5, result.stderr
    assert MARK not in result.stdout + result.stderr
    assert result.stderr.count("98765432") == 1 and "discovery.task_name" in result.stderr  # not a secret field


async def test_url_passwords_never_leave_the_exporter(tmp_path, exporter_from_file, make_sim):
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    sim = await make_sim(flows=static_flows(2, 2))
    from tests.conftest import free_port

    base_url = sim.base_url.replace("http://", f"http://api-user:{MARK}@")
    proxy_url = f"http://proxy-user:{MARK}x@127.0.0.1:{free_port()}"  # nobody listens: every request fails
    path = tmp_path / "config.yaml"
    good = (f"api:\n  base_url: {base_url}\n  proxy_url: {proxy_url}\n  api_key: demo-key\n  api_secret: s\n"
            "  timeout: 300ms\n  retries: 0\npoll:\n  interval: 1s\nflows:\n  - key_id: 1\n  - key_id: 2\n")
    path.write_text(good)
    seen: list[str] = []
    exporter = await exporter_from_file(path, run_poller=False, enable_lifecycle=True)
    try:
        await exporter.account().poller.run_cycle()
        for page in ("/metrics", "/", "/healthz", "/readyz"):
            seen.append((await fetch(exporter.port, page))[2].decode())
        for state in exporter.account().poller.snapshot.flows:
            if state.last_error is not None:
                seen.extend([str(state.last_error), repr(state.last_error), state.last_error.message])
        assert any(state.last_error is not None for state in exporter.account().poller.snapshot.flows)
        # reloads with markers in bad values: refused, without echoing them
        path.write_text(good.replace("  api_key: demo-key\n", f"  api_key: 98765432\n  timezone: {URLS[0]}\n")
                        .replace(proxy_url, URLS[2]))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        path.write_text(good.replace(base_url, f"{base_url} nope"))
        seen.append((await post(exporter.port, "/-/reload")).decode())
        seen.extend([repr(exporter.config), repr(exporter.account().client), repr(exporter.config.api)])
        seen.append((await fetch(exporter.port, "/metrics"))[2].decode())
    finally:
        await exporter.stop()
        structlog.reset_defaults()
    log_text = out.getvalue()
    events = [json.loads(line)["event"] for line in log_text.splitlines()]
    assert "started" in events and "reload_failed" in events and "flow_poll_failed" in events, events
    assert "***@" in log_text  # the URL is shown, its password is not
    for text in [log_text, *seen]:
        assert MARK not in text and "98765432" not in text, text[:2000]
