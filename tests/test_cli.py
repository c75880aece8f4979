"""The command line (exporter/cli.py) as a user runs it: real processes, real exit codes, real output."""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from exporter import __version__, cli
from exporter.vendor.model import STATES
from tests.conftest import free_port, parse_samples
from tests.helpers import TLS, USERS, Pki, write_web_config

EXE = [sys.executable, "-m", "exporter"]


def run(*args, env=None, timeout=30):
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_version():
    result = run("--version")
    assert result.returncode == 0 and f"version {__version__}" in result.stdout


def test_config_check_accepts_a_good_file(tmp_path):
    secret = write(tmp_path, "s3cret\n", "secret")
    path = write(tmp_path, f"""
        api:
          api_key: k
          api_secret_file: {secret}
        flows:
          - key_id: 12
            name: collections-eu
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "s3cret" not in result.stdout + result.stderr


def test_config_check_prints_one_line_per_problem_and_exits_1(tmp_path):
    path = write(tmp_path, """
        api:
          api_key: k
          api_secret_file: /nonexistent/secret
          timeout: 10
        poll:
          interval: often
        flows:
          - key_id: 1
          - key_id: 2
          - key_id: "three"
          - key_id: 1
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    fields = [line.split(":")[0] for line in lines]
    assert fields == ["api.timeout", "poll.interval", "flows[2].key_id"], lines
    # once the shape is right, the cross-field and secret problems are reported
    path = write(tmp_path, """
        api: {api_key: k, api_secret_file: /nonexistent/secret}
        flows: [{key_id: 1}, {key_id: 1}]
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["flows[1].key_id: duplicate key_id 1 (also flows[0])"]
    path = write(tmp_path, """
        api: {api_key: k, api_secret_file: /nonexistent/secret}
        flows: [{key_id: 1}]
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("api.api_secret_file: /nonexistent/secret: cannot read")


def test_missing_secret_is_a_clear_error(tmp_path):
    path = write(tmp_path, "flows: [{key_id: 1}]\napi: {api_key: k}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITNIO_")}
    result = run("--config.file", str(path), env=env)
    assert result.returncode == 1 and result.stderr.startswith("api.api_secret: missing")
    result = run("--config.check", "--config.file", str(path), env={**env, "ITNIO_API_SECRET": "x"})
    assert result.returncode == 0


def test_running_with_a_bad_config_starts_nothing(tmp_path):
    path = write(tmp_path, "flows: {key_id: 1}\n")
    result = run("--config.file", str(path), "--web.listen-address", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "flows" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), "--config.file: required"),
        (("--demo", "--web.listen-address", "nowhere"), "--web.listen-address:"),
        (("--demo", "--web.telemetry-path", "metrics"), "--web.telemetry-path:"),
    ],
)
def test_bad_flags(args, expected):
    result = run(*args)
    assert result.returncode == 1 and result.stderr.startswith(expected)


def _get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def test_demo_serves_flows_in_every_state_within_seconds_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [*EXE, "--demo", "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "demo not ready within 20 s"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        _, body = _get(f"http://127.0.0.1:{port}/metrics")
        samples = parse_samples(body)
        current = {labels["state"] for labels, v in samples["itnio_recall_flow_state"] if v == 1}
        assert current == set(STATES)
        assert all(v == 1 for _, v in samples["itnio_recall_flow_up"])
        assert len(samples["itnio_recall_node_status"]) > 10
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert '"event": "stopping"' in err and "demo-secret" not in err + out


def test_config_check_reports_the_new_sections(tmp_path):
    bad = write(tmp_path, """
        api:
          api_key: k
          api_secret: s
          timezone: Nowhere/Atlantis
        discovery:
          enabled: true
          page_size: 500
          refresh: soon
        enrich:
          node_calls: "yes"
    """)
    result = run("--config.check", "--config.file", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    fields = sorted(line.split(":")[0] for line in result.stderr.strip().splitlines())
    assert fields == ["api.timezone", "discovery.page_size", "discovery.refresh", "enrich.node_calls"], result.stderr
    good = write(tmp_path, """
        api:
          api_key: k
          api_secret: s
        discovery:
          enabled: true
        enrich:
          node_calls: true
    """, "good.yaml")
    result = run("--config.check", "--config.file", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK (0 flows, discovery on, node calls on)" in result.stdout


def test_shard_flags_are_checked_with_one_line_errors(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "--config.file", "x.yaml", *args],
                              capture_output=True, text=True, timeout=30)

    for args, line in [
        (("--shard.count", "3", "--shard.index", "3"), "--shard.index: 3 must be between 0 and 2 (--shard.count 3)"),
        (("--shard.count", "0"), "--shard.count: 0 must be a whole number of at least 1"),
        (("--shard.count", "two"), "--shard.count: 'two' must be a whole number of at least 1"),
        (("--shard.index", "1"), "--shard.index: 1 must be between 0 and 0 (--shard.count 1)"),
        (("--shard.from-hostname", "--shard.index", "0", "--shard.count", "2"),
         "--shard.from-hostname: give either it or --shard.index, not both"),
    ]:
        result = run(*args)
        assert result.returncode == 1 and result.stderr.splitlines() == [line], (args, result.stderr)


def _write_exporter_config(directory: Path) -> Path:
    path = directory / "config.yaml"
    path.write_text("api:\n  api_key: k\n  api_secret: s\nflows:\n  - key_id: 1\n")
    return path


def test_cli_invalid_web_config_exits_1_with_one_line(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_exporter_config(pki.dir)
    web = write_web_config(pki.dir, TLS + "  client_auth_type: Sometimes\n")
    for extra in ([], ["--config.check"]):
        assert cli.main(["--config.file", str(config), "--web.config.file", str(web), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tls_server_config.client_auth_type: 'Sometimes' is not one of" in err[0]
    web = write_web_config(pki.dir, TLS + USERS)
    assert cli.main(["--config.file", str(config), "--web.config.file", str(web), "--config.check"]) == 0
    assert "OK (TLS on, 1 users)" in capsys.readouterr().out


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/-/reload", "/flows", "/healthz/", "/metrics{x}", "/a b"])
@pytest.mark.parametrize("mode", ["demo", "check", "run"])
def test_a_telemetry_path_the_exporter_serves_itself_is_one_line_and_exit_1(tmp_path, path, mode):
    config = write(tmp_path, "api: {api_key: k, api_secret: s}\nflows:\n  - {key_id: 1}\n")
    extra = {"demo": ("--demo",), "check": ("--config.file", str(config), "--config.check"),
             "run": ("--config.file", str(config))}[mode]
    result = run(*extra, "--web.listen-address", f"127.0.0.1:{free_port()}", "--web.telemetry-path", path, timeout=10)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("--web.telemetry-path: ") and repr(path) in line


def test_metrics_at_the_root_replace_the_landing_page(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [*EXE, "--demo", "--web.listen-address", f"127.0.0.1:{port}", "--web.telemetry-path", "/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "demo not ready within 20 s"
            time.sleep(0.2)
        status, body = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "itnio_recall_flow_up" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one_and_logged():
    code = (
        "import resource; from exporter import cli, logs; logs.configure('info', 'json'); "
        "cli.raise_open_files_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 256)),
    )
    assert result.stdout.strip() == "(256, 256)", result.stderr
    logged = json.loads(result.stderr)
    assert (logged["event"], logged["soft"], logged["hard"], logged["raised_from"]) == ("open_files_limit", 256, 256, 64)


def test_max_connections_must_be_a_positive_number():
    for wrong in ("0", "many"):
        result = run("--demo", "--web.max-connections", wrong)
        assert result.returncode == 1 and result.stderr.startswith("--web.max-connections: "), result.stderr


def test_config_check_reports_the_balance_block_and_the_key_file_one_line_per_problem(tmp_path):
    path = write(tmp_path, """
        api: {api_key: k, api_secret: s, timeout: 10s}
        balance: {path: getBalance, interval: 5s, low_threshold: -3, currency: USD}
        flows: [{key_id: 1}]
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == [
        "balance.currency", "balance.low_threshold", "balance.path"], lines
    path = write(tmp_path, """
        api: {api_key_file: /nonexistent/key, api_secret: s}
        balance: {interval: 5s}
        flows: [{key_id: 1}]
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["balance.interval: 5s must not be shorter than api.timeout (10s)"]
    (tmp_path / "key").write_text("k\n")
    path = write(tmp_path, f"""
        api: {{api_key_file: {tmp_path / 'key'}, api_secret: s}}
        balance: {{path: /v3/getBalance, low_threshold: 50}}
        flows: [{{key_id: 1}}]
    """)
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 0, result.stderr
