"""From a YAML file to a checked :class:`~exporter.config.schema.Config`, or a ConfigError.

YAML is read with libyaml's C loader when PyYAML has it (large configs load several times
faster), else with the pure-Python one; both give the same documents and the same
``file:line:col`` in errors. Whatever the text, the result is a Config or a ConfigError
with one line per problem: never another exception.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, HugeInt, validate_mapping
from .files import read_text_file
from .schema import Config

PythonLoaderBase: type = yaml.SafeLoader
CLoaderBase: type | None = getattr(yaml, "CSafeLoader", None)


def _int_or_huge(loader: Any, node: yaml.ScalarNode) -> Any:
    """An int, or :class:`HugeInt` for one past Python's int/str conversion limit (4300 digits):
    validation then names the field it was typed in."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError as exc:
        if "digits" not in str(exc):  # not the length limit: a malformed number like 0b_
            raise yaml.constructor.ConstructorError(None, None, "not a valid integer", node.start_mark) from None
        return HugeInt(sum(ch.isdigit() for ch in str(node.value)))


def _scalar_or_error(construct: Any, kind: str) -> Any:
    """A constructor whose ValueError/OverflowError becomes a YAML error at the scalar's mark."""

    def checked(loader: Any, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError):
            raise yaml.constructor.ConstructorError(None, None, f"not a valid {kind}", node.start_mark) from None

    return checked


def _loader(base: type) -> type:
    loader: Any = type(f"Config{base.__name__}", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:int", _int_or_huge)
    loader.add_constructor(
        "tag:yaml.org,2002:float", _scalar_or_error(yaml.SafeLoader.construct_yaml_float, "number")
    )
    loader.add_constructor(
        "tag:yaml.org,2002:timestamp", _scalar_or_error(yaml.SafeLoader.construct_yaml_timestamp, "date or time")
    )
    return loader


PYTHON_LOADER: type = _loader(PythonLoaderBase)
C_LOADER: type | None = _loader(CLoaderBase) if CLoaderBase is not None else None
LOADER: type = C_LOADER or PYTHON_LOADER


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f":{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def _load(text: str, loader: type) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        # libyaml refuses escaped surrogates ("\ud83d\ude42"), which PyYAML reads (and the
        # schema joins into one character): the pure-Python loader decides those documents.
        if loader is not PYTHON_LOADER and "invalid Unicode character escape" in str(getattr(exc, "problem", "")):
            return yaml.load(text, Loader=PYTHON_LOADER)
        raise


def parse_yaml(text: str, name: str = "config", *, loader: type | None = None) -> Any:
    """The YAML document in ``text``; ConfigError ``name:line:col: invalid YAML: ...`` if it is not one."""
    try:
        return _load(text, loader or LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.position, int):
            where = _position(text, exc.position)
            problem = f"character #x{exc.character:04x} is not allowed" if isinstance(exc.character, int) else "not text"
        else:
            problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
        if "maximum nesting depth" in problem:
            problem = "nested too deeply"
        raise ConfigError([f"{name}{where}: invalid YAML: {_one_line(problem)}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}: invalid YAML: nested too deeply"]) from None
    except UnicodeError:  # a lone surrogate, which no file can hold
        raise ConfigError([f"{name}: invalid YAML: not valid Unicode text"]) from None
    except Exception as exc:  # whatever the text, one line and no traceback
        raise ConfigError([f"{name}: invalid YAML: {_one_line(type(exc).__name__ + ': ' + str(exc))}"]) from None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_config(raw: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError with a line per problem."""
    return validate_mapping(Config, raw, "config")


def load_config(path: str | Path, *, loader: type | None = None) -> Config:
    """Read, parse and validate a config file. Raises ConfigError."""
    path = Path(path)
    return validate_config(parse_yaml(read_text_file(path), str(path), loader=loader))
