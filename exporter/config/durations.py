"""Prometheus durations (``500ms``, ``30s``, ``1h30m``) in config fields: parsing and printing."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_MAX_TEXT = 40  # no sane duration is longer; "9" * 5000 + "y" is not one


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``500ms``, ``30s``, ``1h30m``) into seconds."""
    match = _DURATION_RE.match(text) if len(text) <= _MAX_TEXT else None
    if not text or match is None:
        shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
        raise ValueError(f"{shown!r} is not a duration like 500ms, 30s, 5m or 1h")
    return float(sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus form of a duration, for messages."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(seconds)
    for unit, name in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if rest >= unit:
            out += f"{rest // unit}{name}"
            rest %= unit
    return out


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a duration string like 30s")
    raise ValueError(f"{value!r} has no unit: write it like {value}s")


Duration = Annotated[float, BeforeValidator(_duration)]


def bounded(value: float, low: float, high: float, *, low_inclusive: bool = True) -> float:
    """``value`` if within [low, high] (or (low, high]); else ValueError saying the bounds."""
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high:
        floor = f"at least {format_duration(low)}" if low_inclusive else f"longer than {format_duration(low)}"
        raise ValueError(f"{format_duration(value)} is out of range: must be {floor} and at most {format_duration(high)}")
    return value
