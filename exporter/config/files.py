"""Reading the files the configuration names (config, secret, web config)."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .redact import redact_url


def read_text_file(path: Path, field: str = "") -> str:
    """The UTF-8 text of a file, or a ConfigError naming the file (and the field that names it)."""
    shown = redact_url(str(path))  # a URL pasted as a path keeps its password to itself
    where = f"{field}: {shown}" if field else shown
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: not UTF-8 text"]) from None
