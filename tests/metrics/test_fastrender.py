"""fastrender borrows private helpers from prometheus_client; these tests say when they are gone.

That its bytes are prometheus_client's own (hostile label values, an empty snapshot, 200 flows)
is checked in tests/integration/test_scale.py (test_the_fast_renderer_is_byte_for_byte_prometheus_client).
"""

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
    families = snapshot_families(snapshot)
    assert copy.render_both(families) is None
    monkeypatch.setattr(exposition, "render_both", copy.render_both)
    rendered = RenderedSnapshot.of(snapshot)  # prometheus_client renders instead
    assert rendered.text == _render(families, openmetrics=False) and b'itnio_recall_flow_up{key_id="7"} 0.0' in rendered.text
    assert rendered.openmetrics == _render(families, openmetrics=True)
