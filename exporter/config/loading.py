"""From a YAML file to a checked :class:`~exporter.config.schema.Config`, or a ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, validate_mapping
from .files import read_text_file
from .schema import Config


def validate_config(raw: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError with a line per problem."""
    return validate_mapping(Config, raw, "config")


def parse_yaml(text: str, name: str = "config") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{name}{where}: invalid YAML: {problem}"]) from None


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a config file. Raises ConfigError."""
    path = Path(path)
    return validate_config(parse_yaml(read_text_file(path), str(path)))
