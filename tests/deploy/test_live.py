"""The deploy/ artefacts against the running exporter: `itnio-exporter --demo` on loopback.

- every metric name the dashboard and the rules use is one the demo exposes (or a recording
  rule of alerts.yml);
- the Dockerfile's HEALTHCHECK command works against /healthz;
- a real Prometheus server scrapes the demo with alerts.yml loaded, and every dashboard
  query, every variable query and every rule expression runs through its HTTP API without
  error; the panel queries return data.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, require_tool
from tests.deploy.helpers import (
    ALERTS,
    JOB,
    ROOT,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    exposed_names,
    healthcheck_command,
    metric_names,
    recorded_names,
    rules,
    substitute_grafana,
)

DEMO_KEYS = [str(key) for key in range(1001, 1007)]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(check, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def demo() -> Iterator[int]:
    """The demo exporter on a free loopback port, ready (its first poll cycle done)."""
    port = free_port()
    script = Path(sys.executable).parent / "itnio-exporter"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "exporter"]
    process = subprocess.Popen(
        [*command, "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: process.poll() is None and get(f"http://127.0.0.1:{port}/readyz")[0] == 200, "the demo's /readyz", 20)
        yield port
    finally:
        stop(process)


def demo_metrics(port: int) -> str:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return body.decode()


def test_every_metric_in_rules_and_dashboard_is_exposed_by_the_demo(demo: int) -> None:
    exposed = exposed_names(demo_metrics(demo))
    known = exposed | recorded_names() | {"up"}
    used: dict[str, set[str]] = {}
    for rule in rules():
        used.setdefault(f"rule {rule.get('alert') or rule.get('record')}", set()).update(metric_names(rule["expr"]))
    for title, expr in dashboard_queries():
        used.setdefault(f"panel {title!r}", set()).update(metric_names(expr))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: not label_values(selector, label): {variable['query']['query']}"
            selector = match.group(1)
            used.setdefault(f"variable {variable['name']}", set()).update(metric_names(selector))
    unknown = {where: sorted(names - known) for where, names in used.items() if names - known}
    assert not unknown, f"not exposed by the exporter: {unknown}"
    assert all(names for names in used.values()), "every expression selects at least one metric"


def test_dockerfile_healthcheck_command_probes_healthz(demo: int) -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    script = command[-1]
    assert ":8437/healthz" in script
    ok = subprocess.run([sys.executable, "-c", script.replace(":8437/", f":{demo}/")], capture_output=True, timeout=15)
    assert ok.returncode == 0, ok.stderr
    closed = subprocess.run([sys.executable, "-c", script.replace(":8437/", f":{free_port()}/")], capture_output=True, timeout=15)
    assert closed.returncode != 0, "the health check fails when nothing answers"


# --- A real Prometheus server -----------------------------------------------------------

class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        status, body = get(f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        answer["http_status"] = status
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)


@pytest.fixture
def prometheus(demo: int, tmp_path: Path) -> Iterator[Prometheus]:
    binary = require_tool("prometheus")
    port = free_port()
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{demo}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        server = Prometheus(port)
        wait_for(lambda: process.poll() is None and get(f"{server.base}/-/ready")[0] == 200, "Prometheus to be ready", 20)
        yield server
    finally:
        stop(process)


@pytest.mark.slow
def test_prometheus_scrapes_the_demo_and_runs_every_query(prometheus: Prometheus, demo: int) -> None:
    instance = f"127.0.0.1:{demo}"
    values = {"job": JOB, "instance": instance, "account": "default", "key_id": "|".join(DEMO_KEYS)}

    up = wait_for(
        lambda: prometheus.query(f'up{{job="{JOB}"}} == 1')["data"]["result"], "up == 1 for the demo", 15
    )
    assert up[0]["metric"]["instance"] == instance

    panels = [(title, substitute_grafana(expr, values)) for title, expr in dashboard_queries()]
    legends = {substitute_grafana(target["expr"], values): target.get("legendFormat", "")
               for panel in dashboard_panels() for target in panel["targets"] if target.get("format") != "table"}

    def empty_panels() -> list[str]:
        missing = []
        for title, expr in panels:
            answer = prometheus.query(expr)
            assert answer["status"] == "success", f"panel {title!r}: {expr}: {answer}"
            if not answer["data"]["result"]:
                missing.append(title)
            # A series that keeps its account names it: with several accounts they would mix unnamed.
            if any("account" in r["metric"] for r in answer["data"]["result"]) and expr in legends:
                assert "{{account}}" in legends[expr], f"panel {title!r}: legend {legends[expr]!r} for {expr}"
        return missing

    # Recording rules and rate() need a few scrapes and evaluations before they have data.
    deadline = time.monotonic() + 25
    while (missing := empty_panels()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, f"panels with no data from the demo: {missing}"

    # The variable queries: label_values(selector, label) is Grafana's call of the series API.
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
        assert match, f"variable {variable['name']}: not label_values(selector, label): {variable['query']['query']}"
        selector, label = match.groups()
        answer = prometheus.api(f"label/{label}/values", **{"match[]": substitute_grafana(selector, values)})
        assert answer["status"] == "success", answer
        expected = {"job": [JOB], "instance": [instance], "account": ["default"], "key_id": DEMO_KEYS}[label]
        assert sorted(answer["data"]) == sorted(expected), f"variable {variable['name']}"

    # Every rule expression runs; Prometheus evaluated every rule without error.
    for rule in rules():
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", f"{rule.get('alert') or rule.get('record')}: {answer}"
    loaded = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
    assert len(loaded) == len(rules())
    assert all(rule["health"] == "ok" for rule in loaded), [rule for rule in loaded if rule["health"] != "ok"]

    # And the alerts see what the demo shows: its flow in exception, and nothing down.
    flow_exception = next(rule["expr"] for rule in rules() if rule.get("alert") == "ItnioRecallFlowException")
    in_exception = prometheus.query(flow_exception)["data"]["result"]
    assert [r["metric"]["key_id"] for r in in_exception], "the demo has a flow in execution exception"
    exporter_down = next(rule["expr"] for rule in rules() if rule.get("alert") == "ItnioExporterDown")
    assert prometheus.query(exporter_down)["data"]["result"] == []

    # The demo's account is being spent: three kinds of balance, its threshold, and a finite time left.
    kinds = prometheus.query(f'itnio_account_balance{{job="{JOB}"}}')["data"]["result"]
    assert sorted(r["metric"]["kind"] for r in kinds) == ["actual", "credit", "gift"]
    threshold = prometheus.query(f'itnio_account_balance_low_threshold{{job="{JOB}"}}')["data"]["result"]
    assert [float(r["value"][1]) for r in threshold] == [120.0]
    time_left = next(substitute_grafana(expr, values) for title, expr in dashboard_queries()
                     if title == "Time left at the current spending rate")
    (left,) = prometheus.query(time_left)["data"]["result"]
    assert 0 < float(left["value"][1]) < 30 * 86400, "the demo's flows spend the balance"
