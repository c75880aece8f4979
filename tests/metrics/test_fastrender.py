"""The fast renderer (exporter/metrics/fastrender.py): byte for byte what prometheus_client renders."""

import pytest


def _hostile_snapshot():
    from exporter.polling.snapshot import FlowState, Snapshot
    from exporter.vendor.errors import ApiError, ErrorKind
    from exporter.vendor.model import FlowDetail, NodeDetail

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
    families = snapshot_families(snapshot)
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
