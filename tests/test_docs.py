"""The documentation is real: README.md, SECURITY.md and every docs/*.md.

Every ```promql block parses with promtool; every ```yaml block is recognised and, when it is an
exporter config, validates; every relative link and #anchor resolves; every metric the docs name is
a row of docs/metrics.md, and that table is what an exporter with every feature on serves.
(The web-config and scrape-config blocks are checked with promtool in tests/web/test_webconfig.py.)
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import trustme
import yaml

from exporter.config import Config, validate_config
from exporter.polling.balance import BalancePoller
from exporter.polling.discovery import Discovery
from tests.conftest import fetch, require_tool

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
METRICS_DOC = ROOT / "docs" / "metrics.md"

FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced(language: str) -> list[tuple[Path, str]]:
    """(file, body) of every fenced block of ``language`` in README.md and docs/*.md."""
    return [
        (path, textwrap.dedent(m.group(3)))
        for path in DOCS
        for m in FENCE.finditer(path.read_text())
        if m.group(2) == language
    ]


def prose(text: str) -> str:
    """The Markdown without its fenced blocks (whose lines may start with '#')."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a file's headings, with GitHub's -1, -2 ... suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", prose(path.read_text()), re.M):
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return out


def test_the_docs_are_found():
    names = {rel(path) for path in DOCS}
    assert {"README.md", "docs/configuration.md", "docs/metrics.md", "docs/alerts.md"} <= names


def test_readme_is_a_short_front_door_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert "make demo" in text and "make test" in text


def test_github_anchor():
    assert github_anchor("Alert: `ItnioExporterDown`") == "alert-itnioexporterdown"
    assert github_anchor("Why /metrics is cheap") == "why-metrics-is-cheap"
    assert github_anchor("Try it: two commands") == "try-it-two-commands"


def promql_expressions() -> list[tuple[Path, str]]:
    """Each PromQL expression of each block: blocks hold expressions separated by blank lines, # comments."""
    expressions: list[tuple[Path, str]] = []
    for path, block in fenced("promql"):
        found = []
        for chunk in re.split(r"\n\s*\n", block):
            lines = [line for line in chunk.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            if lines:
                found.append("\n".join(lines))
        assert found, f"{rel(path)}: an empty ```promql block"
        expressions.extend((path, expr) for expr in found)
    return expressions


def test_docs_promql_parses(tmp_path):
    expressions = promql_expressions()
    assert len(expressions) >= 5
    assert {rel(path) for path, _ in expressions} >= {"docs/metrics.md", "docs/scaling.md"}
    rules = {"groups": [{"name": "docs", "rules": [
        {"record": f"docs:example{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)
    ]}]}
    path = tmp_path / "docs-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_catches_a_broken_expression(tmp_path):
    """The check above can fail: an expression with a stray bracket is refused."""
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": [
        {"record": "docs:broken", "expr": "sum by (kind (itnio_api_errors_total)"}]}]}))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode != 0


CONFIG_SECTIONS = set(Config.model_fields)


def yaml_kind(block: str) -> str:
    if block.startswith("# web-config.yml\n"):
        return "web-config"
    raw = yaml.safe_load(block)
    if isinstance(raw, dict) and "scrape_configs" in raw:
        return "prometheus"
    if isinstance(raw, dict) and raw and set(raw) <= CONFIG_SECTIONS:
        return "exporter"
    return "unknown"


def test_every_yaml_block_is_one_the_tests_check():
    unknown = [f"{rel(path)}: {block.splitlines()[0]}" for path, block in fenced("yaml") if yaml_kind(block) == "unknown"]
    assert not unknown, "```yaml blocks that are neither an exporter config, a web config nor a scrape config"
    kinds = [yaml_kind(block) for _, block in fenced("yaml")]
    assert kinds.count("web-config") == 1 and kinds.count("prometheus") == 1


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def exporter_blocks() -> list[tuple[Path, str]]:
    return [(path, block) for path, block in fenced("yaml") if yaml_kind(block) == "exporter"]


@pytest.mark.parametrize(
    ("path", "block"), exporter_blocks(), ids=[f"{rel(path)}:{i}" for i, (path, _) in enumerate(exporter_blocks())]
)
def test_every_exporter_config_block_validates(path: Path, block: str, ca_file: str):
    """Each block validates; a fragment (no flows:, no discovery) as part of a config with one flow.

    CA paths are machine paths: a real CA file stands in for them.
    """
    raw = yaml.safe_load(block)
    if raw.get("api", {}).get("tls", {}).get("ca_file"):
        raw["api"]["tls"]["ca_file"] = ca_file
    if "flows" not in raw and "accounts" not in raw and not raw.get("discovery", {}).get("enabled"):
        raw["flows"] = [{"key_id": 1}]
    validate_config(raw)


def test_the_readme_config_block_is_a_whole_config():
    blocks = [block for path, block in exporter_blocks() if path == README]
    assert blocks
    config = validate_config(yaml.safe_load(blocks[0]))
    assert config.flows[0].key_id == 12
    assert config.api.api_key and config.api.api_secret_file


def test_the_discovery_example_turns_discovery_on_with_no_static_flows():
    blocks = [yaml.safe_load(block) for path, block in exporter_blocks() if "discovery" in yaml.safe_load(block)]
    assert blocks
    raw = blocks[0]
    raw["api"].update(api_key="k", api_secret="s")
    config = validate_config(raw)
    assert config.discovery.enabled and config.flows == []


def links(path: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", prose(path.read_text()))  # inline code holds no links
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for path in DOCS:
        for target in links(path):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.exists():
                broken.append(f"{rel(path)}: {target} (no such file)")
            elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
                broken.append(f"{rel(path)}: {target} (no such heading)")
    assert not broken


def test_the_link_check_can_fail(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("# Title\n\n[a](#title) [b](#missing) [c](y.md)\n")
    assert anchors(doc) == {"title"}
    assert links(doc) == ["#title", "#missing", "y.md"]


# --- docs/metrics.md --------------------------------------------------------------------------

def metrics_table() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """name -> (type, labels, help) from the one table of docs/metrics.md."""
    rows = {}
    for line in METRICS_DOC.read_text().splitlines():
        match = re.fullmatch(r"\| `(itnio_\w+)` \| (\w+) \| *([\w, ]*?) *\| (.+) \|", line)
        if match:
            name, kind, labels, help_text = match.groups()
            assert name not in rows, f"{name}: two rows"
            rows[name] = (kind, tuple(label.strip() for label in labels.split(",") if label.strip()), help_text)
    return rows


def test_metrics_doc_has_one_table_with_one_row_per_metric():
    text = METRICS_DOC.read_text()
    assert text.count("| name | type | labels | help |") == 1
    rows = metrics_table()
    assert len(rows) >= 30
    table_lines = [line for line in text.splitlines() if line.startswith("| `itnio_")]
    assert len(table_lines) == len(rows)


def test_the_metrics_table_is_the_catalogue():
    """Every metric declared in exporter/metrics/catalogue.py has its row, with its type and labels, and
    no row names a metric the catalogue does not declare: a metric cannot be added without its docs."""
    from exporter.metrics import catalogue

    rows = metrics_table()
    assert sorted(rows) == sorted(catalogue.exposed_names()), "docs/metrics.md lists exactly the catalogue"
    for metric in catalogue.METRICS:
        kind, labels, _ = rows[metric.exposed_name]
        assert kind == {"info": "gauge"}.get(metric.type, metric.type), metric.name  # as the text format types it
        assert set(labels) == set(metric.labels) | set(metric.info_labels), metric.name


def test_every_metric_the_docs_name_is_in_the_table():
    rows = metrics_table()
    unknown = set()
    for path in DOCS:
        for name in re.findall(r"(?<![\w:])(itnio_[a-z_]+)(?![\w:*])", path.read_text()):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in rows and base not in rows:
                unknown.add(f"{rel(path)}: {name}")
    assert not unknown


async def test_the_table_is_what_an_exporter_with_every_feature_on_serves(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, discovery={"enabled": True}, enrich={"node_calls": True},
                                   balance={"low_threshold": 20})
    assert await exporter.account().source(Discovery).run_once()
    assert await exporter.account().source(BalancePoller).poll_once()
    await exporter.account().poller.run_cycle()
    status, _, body = await fetch(exporter.port)
    assert status == 200
    served: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            served[name] = kind
        elif line and not line.startswith("#"):
            name = re.sub(r"_(bucket|sum|count)$", "", re.split(r"[{ ]", line, maxsplit=1)[0])
            labels.setdefault(name, set()).update(set(re.findall(r'(\w+)="', line)) - {"le"})
    rows = metrics_table()
    assert sorted(served) == sorted(rows), "docs/metrics.md lists exactly the metrics served"
    for name, (kind, documented, _) in rows.items():
        assert served[name] == kind, name
        if labels.get(name):
            assert labels[name] == set(documented), name
