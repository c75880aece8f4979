"""The README's examples are real: its PromQL parses and its config blocks validate."""

import re
import subprocess
from pathlib import Path

import yaml

from exporter.config import validate_config
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
README = (Path(__file__).parent.parent / "README.md").read_text()


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def promql_expressions() -> list[str]:
    expressions = []
    for block in fenced("promql"):
        for chunk in re.split(r"\n\s*\n", block):
            lines = [line for line in chunk.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            if lines:
                expressions.append("\n".join(lines))
    return expressions


def test_readme_promql_parses(tmp_path):
    expressions = promql_expressions()
    assert len(expressions) >= 5
    rules = {"groups": [{"name": "readme", "rules": [
        {"record": f"readme:example{i}", "expr": expr} for i, expr in enumerate(expressions)
    ]}]}
    path = tmp_path / "readme-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_config_block_is_valid():
    blocks = [block for block in fenced("yaml") if "flows:" in block]
    assert blocks
    config = validate_config(yaml.safe_load(blocks[0]))
    assert config.flows[0].key_id == 12


def test_docs_discovery_examples_are_real(tmp_path):
    """The README's discovery section: its PromQL parses, its config block validates, its metrics exist."""
    import re
    import subprocess
    from pathlib import Path

    import yaml


    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    text = readme.split("## Discovery and per-node call outcomes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": [
        {"record": f"docs:example{i}", "expr": block} for i, block in enumerate(blocks)]}]}))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    raw = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    raw["api"].update(api_key="k", api_secret="s")
    assert validate_config(raw).discovery.enabled
    import exporter.metrics.exposition
    import exporter.metrics.telemetry

    source = Path(exporter.metrics.exposition.__file__).read_text() + Path(exporter.metrics.telemetry.__file__).read_text()
    for name in set(re.findall(r"`(itnio_[a-z_]+)", text)):
        family = name.removesuffix("_total").removesuffix("_info")
        assert f'"{family}"' in source, name


def test_docs_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(scrape_configs:\n.*?)```", text, re.S)
    assert len(blocks) == 1
    job = yaml.safe_load(blocks[0])["scrape_configs"][0]
    assert job["scheme"] == "https" and "basic_auth" in job and "tls_config" in job
    path = tmp_path / "prometheus.yml"
    path.write_text(blocks[0])
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
