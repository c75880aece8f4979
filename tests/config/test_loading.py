"""Loading a config file (exporter/config/loading.py): the shipped example, YAML errors, a missing file."""

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config


def test_example_config_is_valid():
    config = load_config(Path(__file__).resolve().parents[2] / "config.example.yaml")
    assert [flow.key_id for flow in config.flows] == [12, 13]
    assert config.poll.stale_after_seconds == 180


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  api_key: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path}:")
    assert "invalid YAML" in info.value.problems[0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.problems[0]
