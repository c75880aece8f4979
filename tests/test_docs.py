"""The README's examples are real: its PromQL parses and its config block validates."""

import re
import subprocess
from pathlib import Path

import yaml

from exporter.config import validate_config
from tests.conftest import require_tool

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
