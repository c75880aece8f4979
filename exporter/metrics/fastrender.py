"""prometheus_client's text and OpenMetrics renderers, both in one pass, with memoised escaping.

prometheus_client renders every sample from scratch: it sorts the labels, escapes every
label name and value, formats the value and, for OpenMetrics, escapes the sample name one
character at a time (~12 us per series for text, ~29 us for OpenMetrics). A snapshot's
series repeat the same few names, label values and numbers over and over, so here each
of those is escaped once and reused, and a sample's labels and value are formatted once
for both formats. The output is byte for byte prometheus_client's (the tests
check it against prometheus_client on hostile input); anything this does not handle
(units, timestamps, exemplars, histograms ...) returns None and the caller falls back to
prometheus_client itself.

It borrows prometheus_client's own escaping helpers, some of them private, so that the
bytes stay identical; pyproject.toml pins prometheus-client to the minor versions tested
with them. Should one of them be gone, MISSING_HELPERS names it, render_both returns None
(prometheus_client's renderer takes over: slower, still correct) and
tests/metrics/test_fastrender.py fails, naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from prometheus_client.core import Metric

_HELPERS = {
    "prometheus_client.openmetrics.exposition": (
        "ALLOWUTF8", "UNDERSCORES", "_escape", "_is_legacy_labelname_rune", "escape_label_name"
    ),
    "prometheus_client.utils": ("floatToGoString",),
    "prometheus_client.validation": ("_is_valid_legacy_metric_name",),
}


def _missing_helpers() -> tuple[str, ...]:
    """The dotted names in _HELPERS that this prometheus_client does not have."""
    missing: list[str] = []
    for module_name, names in _HELPERS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        missing.extend(f"{module_name}.{name}" for name in names if not hasattr(module, name))
    return tuple(missing)


try:
    from prometheus_client.openmetrics.exposition import (
        ALLOWUTF8,
        UNDERSCORES,
        _escape,
        _is_legacy_labelname_rune,
        escape_label_name,
    )
    from prometheus_client.utils import floatToGoString
    from prometheus_client.validation import _is_valid_legacy_metric_name
except ImportError:
    MISSING_HELPERS = _missing_helpers()
else:
    MISSING_HELPERS = ()
    _ESCAPING = UNDERSCORES  # what both generate_latest functions use by default
_TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "info": "gauge"}
_TEXT_SUFFIX = {"counter": "_total", "info": "_info"}


def render_both(families: Iterable[Metric], pause: Callable[[], None] | None = None) -> tuple[bytes, bytes] | None:
    """(text, OpenMetrics without the final ``# EOF``), or None if a family is out of scope.

    ``pause``, if given, is called every 1,000 samples (to let another thread run)."""
    if MISSING_HELPERS:
        return None
    families = list(families)
    for metric in families:
        if metric.type not in _TEXT_TYPES or metric.unit or not _is_valid_legacy_metric_name(metric.name):
            return None
    text: list[str] = []
    openmetrics: list[str] = []
    pairs: dict[tuple[str, str], str] = {}
    values: dict[float, str] = {}
    om_names: dict[str, str] = {}
    count = 0
    for metric in families:
        name = metric.name
        text_name = name + _TEXT_SUFFIX.get(metric.type, "")
        doc = metric.documentation
        text.append(f"# HELP {text_name} {doc.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n")
        text.append(f"# TYPE {text_name} {_TEXT_TYPES[metric.type]}\n")
        openmetrics.append(f"# HELP {name} {_escape(doc, ALLOWUTF8, _is_legacy_labelname_rune)}\n")
        openmetrics.append(f"# TYPE {name} {metric.type}\n")
        for sample in metric.samples:
            count += 1
            if pause is not None and count % 1000 == 0:
                pause()
            if sample.timestamp is not None or sample.exemplar or sample.native_histogram or sample.value is None:
                return None
            sample_name = sample.name
            om_name = om_names.get(sample_name)
            if om_name is None:
                if not _is_valid_legacy_metric_name(sample_name) or sample_name in (
                    name + "_created", name + "_gsum", name + "_gcount"
                ):
                    return None  # quoted names, or samples text moves to a family of their own
                om_name = om_names[sample_name] = _escape(sample_name, _ESCAPING, _is_legacy_labelname_rune)
            if sample.labels:
                parts = []
                for pair in sorted(sample.labels.items()):
                    rendered = pairs.get(pair)
                    if rendered is None:
                        key, label_value = pair
                        escaped = _escape(label_value, ALLOWUTF8, _is_legacy_labelname_rune)
                        rendered = pairs[pair] = f'{escape_label_name(key, _ESCAPING)}="{escaped}"'
                    parts.append(rendered)
                labels = "{" + ",".join(parts) + "}"
            else:
                labels = ""
            number = sample.value
            value = values.get(number) if number != 0 else None  # 0.0 and -0.0 are equal keys
            if value is None:
                value = floatToGoString(number)
                if number != 0:
                    values[number] = value
            text.append(f"{sample_name}{labels} {value}\n")
            openmetrics.append(f"{om_name}{labels} {value}\n")
    return "".join(text).encode("utf-8"), "".join(openmetrics).encode("utf-8")
