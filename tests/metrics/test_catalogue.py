"""The metric catalogue is the whole truth about /metrics: what an exporter emits is declared
there, as declared, and every declared metric is emitted by some configuration."""

import re

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.metrics import catalogue
from exporter.polling.balance import BalancePoller
from exporter.polling.discovery import Discovery
from exporter.polling.shard import Shard
from tests.conftest import fetch

# The ids a label may carry: of the flows the operator watches, their nodes and the nodes'
# (or the flow's parent) group-call task and script. Any other id would be unbounded.
ID_LABELS = {"key_id", "node_key_id", "task_id", "script_id"}


async def everything_on(sim, make_exporter):
    """An exporter with every optional feature on, after a poll cycle and a discovery run."""
    exporter = await make_exporter(
        sim,
        run_poller=False,
        enrich={"node_calls": True},
        discovery={"enabled": True, "lookback": "1d"},
        balance={"enabled": True, "low_threshold": 10},
        exporter_options={"shard": Shard(0, 1)},
    )
    assert await exporter.account().source(Discovery).run_once()
    assert await exporter.account().source(BalancePoller).poll_once()
    await exporter.account().poller.run_cycle()
    await exporter.account().poller.run_cycle()  # group-call counts are fetched for nodes the last cycle saw
    return exporter


async def emitted(port: int) -> dict[str, object]:
    """The families of an OpenMetrics scrape (counters and infos by their family name), by name."""
    status, _, body = await fetch(port, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    return {family.name: family for family in parse_openmetrics(body.decode())}


async def test_every_emitted_family_is_in_the_catalogue_as_declared_and_none_is_missing(sim, make_exporter):
    exporter = await everything_on(sim, make_exporter)
    families = await emitted(exporter.port)

    assert set(families) == set(catalogue.BY_NAME)  # nothing undeclared, no dead entry
    for name, family in families.items():
        metric = catalogue.BY_NAME[name]
        assert (family.type, family.documentation) == (metric.type, metric.documentation), name
        assert family.samples, name
        expected = set(metric.labels) | set(metric.info_labels)
        for sample in family.samples:
            labels = set(sample.labels) - ({"le"} if metric.type == "histogram" else set())
            assert labels == expected, (sample.name, sample.labels)
        if metric.type == "histogram":
            bounds = sorted({float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")})
            assert bounds == [*metric.buckets, float("inf")]
    # the enrichment and discovery families carry real data, not just declared series
    assert {s.labels["endpoint"] for s in families["itnio_api_requests"].samples} >= {
        "recallFlow/queryDetail", "recallFlow/queryPage", "group/call/detail", "getBalance"
    }


async def test_the_text_format_names_are_the_exposed_names(sim, make_exporter):
    exporter = await everything_on(sim, make_exporter)
    status, _, body = await fetch(exporter.port)
    assert status == 200
    helps = re.findall(r"^# HELP (\S+) ", body.decode(), flags=re.MULTILINE)
    assert sorted(helps) == sorted(catalogue.exposed_names())
    assert {"itnio_api_requests_total", "itnio_recall_flow_info", "itnio_api_request_duration_seconds"} <= set(helps)
    # and the text parser reads each back as declared (infos are gauges in the text format)
    for family in parse_text(body.decode()):
        metric = catalogue.BY_NAME[family.name.removesuffix("_info")]
        assert family.type == {"info": "gauge"}.get(metric.type, metric.type)


async def test_before_a_cycle_and_without_discovery_their_families_are_absent(sim, make_exporter):
    exporter = await make_exporter(sim, run_poller=False, balance={"enabled": False})
    families = await emitted(exporter.port)
    optional = {
        "itnio_exporter_discovery_last_run_successful", "itnio_exporter_discovery_last_success_timestamp_seconds",
        "itnio_exporter_discovered_flows", "itnio_exporter_discovered_flows_dropped",
        "itnio_exporter_last_poll_timestamp_seconds",
        "itnio_account_balance", "itnio_account_balance_low_threshold", "itnio_account_balance_interval_seconds",
        "itnio_account_balance_last_success_timestamp_seconds",
    }
    assert not optional & set(families)
    assert set(families) == set(catalogue.BY_NAME) - optional


def test_names_are_unique_and_follow_the_conventions():
    names = [metric.name for metric in catalogue.METRICS]
    assert len(names) == len(set(names))
    exposed = catalogue.exposed_names()
    assert len(exposed) == len(set(exposed))
    for metric in catalogue.METRICS:
        assert re.fullmatch(r"itnio_(account|api|exporter|recall)(_[a-z0-9_]+)?", metric.name), metric.name
        assert not metric.name.endswith(("_total", "_info", "_created", "_bucket", "_sum", "_count")), metric.name
        assert "_total" not in metric.name, metric.name  # only counters get it, and from the exposition
        assert not re.search(r"_(minutes|milliseconds|ms|hours)\b", metric.name), metric.name  # base units
        if "timestamp" in metric.name or "duration" in metric.name or "interval" in metric.name:
            assert metric.name.endswith("_seconds"), metric.name
        assert bool(metric.buckets) == (metric.type == "histogram"), metric.name
        assert list(metric.buckets) == sorted(set(metric.buckets)), metric.name
        assert not metric.info_labels or metric.type == "info", metric.name


def test_help_is_sentences_with_the_common_suffix():
    for metric in catalogue.METRICS:
        assert metric.help.endswith("."), metric.name
        assert metric.help[0].isupper() or metric.help[0].isdigit(), metric.name
        assert "\n" not in metric.help and catalogue.BACKGROUND not in metric.help, metric.name
        assert metric.documentation == metric.help + (catalogue.BACKGROUND if metric.background else "")
    http_side = [metric.name for metric in catalogue.METRICS if not metric.background]
    assert http_side == ["itnio_exporter_http_auth_failures"], "only what this exporter's HTTP side counts"
    assert catalogue.BACKGROUND == " Data come from a background poll of the ITNIO API, not from the scrape."


@pytest.mark.parametrize("metric", catalogue.METRICS, ids=lambda metric: metric.name)
def test_labels_are_valid_and_bounded(metric):
    labels = [*metric.labels, *metric.info_labels]
    assert len(labels) == len(set(labels))
    for label in labels:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", label) and not label.startswith("__"), label
        assert label not in ("le", "quantile"), label  # reserved by histograms and summaries
        if re.search(r"(^|_)(id|ids|key|uuid|phone|number)$", label):
            assert label in ID_LABELS, f"{metric.name}: {label} looks unbounded"
