"""deploy/grafana: the dashboard is importable, wired to its variables, has the panels the issue
asks for, and every query parses (promtool). That the queries return data from a real
Prometheus is tests/deploy/test_live.py's job."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.helpers import DEPLOY, dashboard, dashboard_panels, dashboard_queries, run, substitute_grafana, tool

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {
    "Flow states over time": "state-timeline",
    "Nodes per state": "timeseries",
    "Nodes": "table",
    "API requests": "timeseries",
    "API errors by kind and code": "timeseries",
    "API request latency": "timeseries",
    "Data age per flow": "timeseries",
    "Exporter version": "stat",
    "Account balance": "timeseries",
    "Time left at the current spending rate": "stat",
}
VALUES = {"job": "itnio-exporter", "instance": "exporter:8437", "key_id": "1001|1002"}


def test_dashboard_identity_and_variables() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and "id" not in board, "importable: no instance-specific id"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "key_id"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance", "key_id"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["query"]["query"].startswith("label_values(") and variable["query"]["query"].endswith(f", {name})")
    assert variables["instance"]["multi"] and variables["key_id"]["multi"]
    assert '$job' in variables["instance"]["query"]["query"] and '$instance' in variables["key_id"]["query"]["query"]


def test_required_panels_are_there() -> None:
    panels = {panel["title"]: panel["type"] for panel in dashboard_panels()}
    assert {title: panels.get(title) for title in REQUIRED_PANELS} == REQUIRED_PANELS


def test_panels_use_the_datasource_variable_and_the_selectors() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "unique panel ids"
    for panel in dashboard_panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert 'job="$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], panel["title"]


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each query, Grafana variables replaced, as a recording rule."""
    rules = [{"record": f"dashboard:panel_{i}:query", "expr": substitute_grafana(expr, VALUES)}
             for i, (_, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_query_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": "sum by (x (y)"}]}]}))
    assert run([tool("promtool"), "check", "rules", str(path)]).returncode != 0


def test_provisioning_examples() -> None:
    dashboards = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "itnio-exporter.yml").read_text())
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
