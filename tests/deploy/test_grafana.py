"""deploy/grafana: the dashboard is importable, wired to its variables, has the panels the issue
asks for, and every query parses (promtool). That the queries return data from a real
Prometheus is tests/deploy/test_live.py's job.

One exporter may watch several accounts: the `$account` variable comes before the flow selector,
which lists the flows of the selected accounts; every query shows the selected accounts only, and
every series that keeps `account` names it in its legend."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.helpers import (
    DEPLOY,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    label_lists,
    per_account_names,
    recorded_names,
    run,
    substitute_grafana,
    tool,
)

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
    "Back-off per account": "timeseries",
}
VALUES = {"job": "itnio-exporter", "instance": "exporter:8437", "account": "default|eu-main", "key_id": "1001|1002"}
ACCOUNT_FILTER = 'account=~"$account"'
SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?")


def test_dashboard_identity_and_variables() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and "id" not in board, "importable: no instance-specific id"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "account", "key_id"], "$account before the flows"
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance", "account", "key_id"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["query"]["query"].startswith("label_values(") and variable["query"]["query"].endswith(f", {name})")
    for name in ("instance", "account", "key_id"):
        assert variables[name]["multi"] and variables[name]["includeAll"] and variables[name]["allValue"] == ".*", name
    assert '$job' in variables["instance"]["query"]["query"] and '$instance' in variables["key_id"]["query"]["query"]
    account = 'label_values(itnio_account_info{job="$job", instance=~"$instance"}, account)'
    assert variables["account"]["query"]["query"] == account
    assert ACCOUNT_FILTER in variables["key_id"]["query"]["query"], "the flow selector lists the selected accounts' flows"


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


def unfiltered_selectors(expr: str) -> list[str]:
    """The selectors of per-account series (and of recording rules, which keep the account) in ``expr``
    that do not filter on the selected accounts."""
    per_account = per_account_names() | recorded_names()
    return [
        match.group(0)
        for match in SELECTOR.finditer(expr)
        if match.group(1) in per_account and ACCOUNT_FILTER not in (match.group(2) or "")
    ]


def test_unfiltered_selectors_are_found() -> None:
    assert unfiltered_selectors('sum(itnio_exporter_flows{job="$job"})') == ['itnio_exporter_flows{job="$job"}']
    assert unfiltered_selectors('rate(itnio_api_requests_total[5m])') == ["itnio_api_requests_total"]
    assert unfiltered_selectors('itnio_exporter_build_info{job="$job"} and on (job, instance) '
                                'itnio_account_info{account=~"$account"}') == []


def test_every_query_shows_the_selected_accounts_only() -> None:
    wrong = {title: bad for title, expr in dashboard_queries() if (bad := unfiltered_selectors(expr))}
    assert not wrong, f"series of accounts not selected: {wrong}"
    assert all(ACCOUNT_FILTER in expr for _, expr in dashboard_queries())


def test_legends_name_the_account_where_accounts_mix() -> None:
    """A series kept by account names it, and a flow is <account>/<key_id>: two accounts' flow 12 are two
    lines. (tests/deploy/test_live.py checks the same on the series a real Prometheus returns.)"""
    for panel in dashboard_panels():
        for target in panel["targets"]:
            if target.get("format") == "table":
                continue
            expr, legend = target["expr"], target.get("legendFormat", "")
            kept = set().union(*(labels for clause, labels in label_lists(expr) if clause == "by"))
            if "account" in kept:
                assert "{{account}}" in legend, f"{panel['title']}: {legend!r} for {expr}"
            if "key_id" in kept:
                assert "{{account}}/{{key_id}}" in legend, f"{panel['title']}: {legend!r}: a flow is <account>/<key_id>"


def test_the_nodes_table_shows_the_account() -> None:
    (table,) = [panel for panel in dashboard_panels() if panel["title"] == "Nodes"]
    order = table["transformations"][0]["options"]["indexByName"]
    assert order["account"] < order["key_id"]
    (target,) = table["targets"]
    assert any("account" in labels for clause, labels in label_lists(target["expr"]) if clause == "by")
