"""The fast renderer (exporter/metrics/fastrender.py): byte for byte what prometheus_client renders, and
a loud failure when the private prometheus_client helpers it borrows are gone."""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import version

import pytest
from prometheus_client import utils
from prometheus_client.core import GaugeMetricFamily

from exporter.metrics import exposition, fastrender
from exporter.metrics.exposition import RenderedSnapshot, _render, snapshot_families
from exporter.polling.snapshot import FlowState, Snapshot


def test_prometheus_client_still_has_every_helper_fastrender_borrows():
    assert not fastrender.MISSING_HELPERS, (
        f"prometheus_client {version('prometheus-client')} has no {', '.join(fastrender.MISSING_HELPERS)}: "
        "the fast renderer is off and /metrics renders several times slower. Adapt exporter/metrics/fastrender.py "
        "to this prometheus_client, or pin prometheus-client in pyproject.toml to the versions it works with."
    )
    assert fastrender.render_both([GaugeMetricFamily("g", "help", value=1)]) is not None


def _fresh_fastrender():
    """A separate copy of exporter/metrics/fastrender.py, imported against prometheus_client as it is now."""
    spec = importlib.util.spec_from_file_location("fastrender_copy", fastrender.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "remove, missing",
    [
        ("attribute", "prometheus_client.utils.floatToGoString"),
        ("module", "prometheus_client.validation._is_valid_legacy_metric_name"),
    ],
)
def test_without_a_helper_the_exporter_still_renders_with_prometheus_client(monkeypatch, remove, missing):
    if remove == "attribute":
        monkeypatch.delattr(utils, "floatToGoString")  # prometheus_client's renderers hold their own reference
    else:
        monkeypatch.setitem(sys.modules, "prometheus_client.validation", None)  # import fails
    copy = _fresh_fastrender()  # no exception at import
    assert missing in copy.MISSING_HELPERS

    flows = (FlowState(key_id=7, name='say "hi"\n', detail=None, up=False, last_success=None, polls=1),)
    snapshot = Snapshot(flows=flows, cycles=1, cycle_started=1.0, cycle_duration=0.5)
    families = snapshot_families([snapshot])
    assert copy.render_both(families) is None
    monkeypatch.setattr(exposition, "render_both", copy.render_both)
    rendered = RenderedSnapshot.of([snapshot])  # prometheus_client renders instead
    assert rendered.text == _render(families, openmetrics=False)
    assert b'itnio_recall_flow_up{account="default",key_id="7"} 0.0' in rendered.text
    assert rendered.openmetrics == _render(families, openmetrics=True)

def _hostile_snapshot():
    from exporter.itnio.errors import ApiError, ErrorKind
    from exporter.itnio.model import FlowDetail, NodeDetail
    from exporter.polling.snapshot import FlowState, Snapshot

    names = ['plain', 'quote " and \\ backslash', "new\nline", "tab\tand unicode \u00e9\u4e2d\U0001f642", "", "\\n not a newline",
             "\ud83d\ude42".encode("utf-16", "surrogatepass").decode("utf-16"), '"}{,=']
    flows = []
    for i, name in enumerate(names):
        detail = FlowDetail(
            status=[0, 1, 2, 3, 4, 9, -1, 2][i], recall_interval_minutes=[5, 0, 2**40, 7, 1, 3, 60, 9][i],
            recall_num=i, recall_type=i % 3,
            nodes=tuple(NodeDetail(i * 100 + j, None if j % 2 else 7 * j, None if j % 3 else j, (i + j) % 7) for j in range(i)),
        )
        flows.append(FlowState(
            key_id=10**12 + i if i % 2 else i + 1, name=name, detail=detail if i != 4 else None, up=bool(i % 2),
            last_success=[None, 1.8e9, 1800000000.123, 0.0, 1e-7, 12345678.9, 2.5, 1e21][i],
            stale=(i == 6), polls=10**i, errors=(("http", i), ("timeout", 2 * i)),
            last_error=ApiError(ErrorKind.HTTP, "503", "x") if i % 2 else None,
        ))
    return Snapshot(flows=tuple(flows), cycles=3, cycle_started=1800000000.5, cycle_duration=0.123, max_nodes_per_flow=3)


@pytest.mark.parametrize("which", ["hostile", "empty", "large"])
def test_the_fast_renderer_is_byte_for_byte_prometheus_client(which):
    from exporter.metrics.exposition import _render, snapshot_families
    from exporter.metrics.fastrender import render_both
    from exporter.polling.snapshot import Snapshot

    snapshot = {"hostile": _hostile_snapshot, "empty": Snapshot}[which]() if which != "large" else None
    if snapshot is None:
        import benchmarks.bench as bench  # the benchmark's synthetic snapshot: 200 flows, 10 nodes

        snapshot = bench.synthetic_snapshot(200)
    families = snapshot_families([snapshot])
    assert render_both(families) == (_render(families, openmetrics=False), _render(families, openmetrics=True))


def test_the_fast_renderer_leaves_what_it_does_not_handle_to_prometheus_client():
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    from exporter.metrics.fastrender import render_both

    assert render_both([HistogramMetricFamily("h", "d", buckets=[("+Inf", 1)], sum_value=1)]) is None
    assert render_both([GaugeMetricFamily("g", "d", value=1, unit="seconds")]) is None
    timed = GaugeMetricFamily("g", "d", labels=["a"])
    timed.add_metric(["x"], 1, timestamp=5)
    assert render_both([timed]) is None
    signed = GaugeMetricFamily("z", "d", labels=["a"])
    signed.add_metric(["x"], 0.0)
    signed.add_metric(["y"], -0.0)
    text, _ = render_both([signed])
    assert text.endswith(b'z{a="x"} 0.0\nz{a="y"} -0.0\n')
