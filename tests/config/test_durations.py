"""Prometheus durations in config fields (exporter/config/durations.py)."""

import pytest

from exporter.config import parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1d", 86400), ("2w", 1209600)],
)
def test_prometheus_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1.5s", "s", "5 m", "-1s", "1s1h", "1x"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
