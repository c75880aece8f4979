"""The command line (exporter/cli.py) as a user runs it: real processes, real exit codes, real output."""

import asyncio
import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__, cli
from exporter.itnio.model import STATES
from exporter.simulator import DEMO_API_SECRET
from tests.conftest import fetch, free_port, parse_samples, post, scrape, value
from tests.helpers import TLS, USERS, Pki, wait_for_http, write_web_config

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
        (("--api.check.account", "eu-main"), "--api.check.account: goes with --api.check\n"),
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
        wait_for_http(port, proc, "/readyz", ok_only=True)
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
        wait_for_http(port, proc, "/readyz", ok_only=True)
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


def _feed(fifo: Path, text: str) -> bool:
    """Write ``text`` to a named pipe if a reader has it open (False: nobody is reading it)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return False
        raise
    with os.fdopen(fd, "w") as pipe:
        pipe.write(text)
    return True


async def _feed_when_read(fifo: Path, text: str) -> None:
    async with asyncio.timeout(10):
        while not _feed(fifo, text):  # noqa: ASYNC110  (another process opens it: no event to wait on)
            await asyncio.sleep(0.01)


@dataclass
class Running:
    """A real exporter process and its log lines as they come."""

    proc: asyncio.subprocess.Process
    port: int
    log: list[str]
    reader: asyncio.Task[None]

    def reloads(self) -> int:
        return sum("event=reloaded" in line for line in self.log)

    async def stop(self) -> None:
        """SIGTERM, and wait for the end of its log."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
            await asyncio.wait_for(self.reader, 5)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def _start_exporter(config: Path, *flags: str, secret_fifo: Path | None = None) -> Running:
    """A real exporter process, ready (first poll cycle done); fed its secret through ``secret_fifo``."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *EXE, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}", *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            lines.append(line.decode())

    running = Running(proc, port, lines, asyncio.create_task(read()))
    if secret_fifo is not None:
        await _feed_when_read(secret_fifo, DEMO_API_SECRET)
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(OSError):
                if (await fetch(port, "/readyz"))[0] == 200:
                    return running
            await asyncio.sleep(0.1)


def _fifo_config(tmp_path: Path, base_url: str) -> tuple[Path, Path]:
    """A config whose secret file is a named pipe: a reload waits in reading it until the test
    writes the secret (:func:`_feed_when_read`), as it would on a slow file system."""
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    config = write(tmp_path, f"""\
        api: {{base_url: "{base_url}", api_key: demo-key, api_secret_file: {fifo}}}
        poll: {{interval: 10m}}
        flows: [{{key_id: 1}}]
        """)
    return config, fifo


async def _end_reload(exporter: Running, fifo: Path, done: int) -> None:
    """Let the reload that is reading the secret finish: the ``done``-th one."""
    await _feed_when_read(fifo, DEMO_API_SECRET)
    async with asyncio.timeout(5):  # it has read the secret and closed the pipe
        while exporter.reloads() < done:  # noqa: ASYNC110  (lines of a pipe: no event to wait on)
            await asyncio.sleep(0.01)


async def test_sighups_during_a_reload_are_merged_into_one_more(tmp_path, sim):
    config, fifo = _fifo_config(tmp_path, sim.base_url)
    exporter = await _start_exporter(config, secret_fifo=fifo)
    try:
        for _ in range(200):  # the first starts a reload, which waits; the others arrive meanwhile
            exporter.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.001)
        await _end_reload(exporter, fifo, 1)
        await _end_reload(exporter, fifo, 2)  # the one that the 199 others share
        await asyncio.sleep(0.5)
        assert not _feed(fifo, DEMO_API_SECRET), "a third reload is reading the secret"
        assert value(await scrape(exporter.port), "itnio_exporter_config_last_reload_successful") == 1
    finally:
        await exporter.stop()
    assert exporter.reloads() == 2, exporter.reloads()


async def test_concurrent_reload_posts_share_one_reload_and_all_get_its_answer(tmp_path, sim):
    config, fifo = _fifo_config(tmp_path, sim.base_url)
    exporter = await _start_exporter(config, "--web.enable-lifecycle", secret_fifo=fifo)
    try:
        first = asyncio.create_task(post(exporter.port))
        await asyncio.sleep(0.3)  # its reload is waiting for the secret
        others = asyncio.gather(*(post(exporter.port) for _ in range(99)))
        await asyncio.sleep(0.5)  # they all arrived during the first reload
        await _end_reload(exporter, fifo, 1)
        assert await first == (200, b"OK\n")
        assert not others.done()  # they wait for the reload that began after they asked
        await _end_reload(exporter, fifo, 2)
        assert await others == [(200, b"OK\n")] * 99
        await asyncio.sleep(0.3)
        assert not _feed(fifo, DEMO_API_SECRET), "a third reload is reading the secret"
    finally:
        await exporter.stop()
    assert exporter.reloads() == 2, exporter.reloads()


def test_config_check_of_several_accounts_reports_each_and_names_the_broken_one(tmp_path):
    for name in ("eu", "us"):
        (tmp_path / f"{name}-key").write_text(f"key-{name}\n")
        (tmp_path / f"{name}-secret").write_text(f"secret-{name}\n")
    good = f"""
        poll: {{interval: 60s}}
        accounts:
          - name: eu-main
            api: {{api_key_file: {tmp_path / 'eu-key'}, api_secret_file: {tmp_path / 'eu-secret'}}}
            flows: [{{key_id: 12}}]
          - name: us-resell
            api: {{api_key_file: {tmp_path / 'us-key'}, api_secret_file: {tmp_path / 'us-secret'}}}
            poll: {{interval: 2m}}
            flows: [{{key_id: 12}}, {{key_id: 13}}]
            discovery: {{enabled: true}}
    """
    result = run("--config.check", "--config.file", str(write(tmp_path, good)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"{tmp_path / 'config.yaml'}: account eu-main: OK (1 flows)",
        f"{tmp_path / 'config.yaml'}: account us-resell: OK (2 flows, discovery on)",
    ]
    # a missing secret file is one line naming the account's field; the environment does not stand in
    broken = good.replace(str(tmp_path / "us-secret"), str(tmp_path / "nowhere"))
    result = run("--config.check", "--config.file", str(write(tmp_path, broken)),
                 env={**os.environ, "ITNIO_API_SECRET": "from-the-environment"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accounts[1].api.api_secret_file: "), lines
    # the same key at the same base_url twice is one account configured twice
    (tmp_path / "us-key").write_text("key-eu\n")
    result = run("--config.check", "--config.file", str(write(tmp_path, good)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "accounts[1].api: the same API key and base_url as accounts[0] (one account, twice)"]
