"""The exporter's own counters: requests sent to the vendor, their errors and latency.

These change with every request, so they live in a prometheus_client registry of
their own (never the global one) and are rendered on each scrape; they are a few
dozen series at most. Per-flow data are rendered once per poll cycle instead
(see :mod:`exporter.metrics.exposition`). Both build every metric from its entry in
:mod:`exporter.metrics.catalogue`.
"""

from __future__ import annotations

import platform
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

from .. import __version__
from ..itnio.decoding import DRIFT_SERIES
from ..itnio.endpoints import DOCUMENTED_CODES, QUERY_DETAIL, QUERY_PAGE
from ..itnio.errors import ApiError, ErrorKind
from ..polling.shard import Shard
from . import catalogue

# `_created` series double every counter for little use here.
disable_created_metrics()

_LIVE_TYPES: dict[str, type[MetricWrapperBase]] = {
    "counter": Counter, "gauge": Gauge, "histogram": Histogram, "info": Info
}
_L = TypeVar("_L", bound=MetricWrapperBase)
# The reason label of HTTP_AUTH_FAILURES (exporter.web.auth names them), all created at 0.
AUTH_FAILURE_REASONS = ("missing", "malformed", "unknown_user", "wrong_password", "rejected_busy")


def _live(kind: type[_L], metric: catalogue.Metric, registry: CollectorRegistry) -> _L:
    """The prometheus_client object of a catalogue entry, registered in ``registry``."""
    assert _LIVE_TYPES[metric.type] is kind, (metric.name, kind)
    options: dict[str, Any] = {"buckets": metric.buckets} if metric.buckets else {}
    return kind(metric.name, metric.documentation, metric.labels, registry=registry, **options)


def _info(metric: catalogue.Metric, *values: str) -> dict[str, str]:
    """An info's value: its catalogue info_labels, in order, set to ``values``."""
    return dict(zip(metric.info_labels, values, strict=True))


class Telemetry:
    """Owns the registry of request-level metrics. Each account reports into its own
    :class:`AccountTelemetry` (:meth:`account`), which labels every series with the account."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = _live(Counter, catalogue.API_REQUESTS, registry)
        self.errors = _live(Counter, catalogue.API_ERRORS, registry)
        self.duration = _live(Histogram, catalogue.API_REQUEST_DURATION, registry)
        self.retries = _live(Counter, catalogue.API_RETRIES, registry)
        self.drift = _live(Counter, catalogue.API_SCHEMA_DRIFT, registry)
        self.clock_offset = _live(Gauge, catalogue.CLOCK_OFFSET, registry)
        self.backoff = _live(Gauge, catalogue.BACKOFF, registry)
        self.reload_successful = _live(Gauge, catalogue.CONFIG_RELOAD_SUCCESSFUL, registry)
        self.reload_success_time = _live(Gauge, catalogue.CONFIG_RELOAD_SUCCESS_TIME, registry)
        self.auth_failures = _live(Counter, catalogue.HTTP_AUTH_FAILURES, registry)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        _live(Info, catalogue.BUILD_INFO, registry).info(
            _info(catalogue.BUILD_INFO, __version__, platform.python_version())
        )
        self.config = _live(Info, catalogue.CONFIG_INFO, registry)
        self.set_config_info(tls_insecure_skip_verify=False)
        self.account_info = _live(Info, catalogue.ACCOUNT_INFO, registry)
        self._discovery: tuple[Gauge, Gauge, Gauge, Gauge] | None = None

    def account(self, name: str) -> AccountTelemetry:
        """The telemetry of one account: every series it creates carries ``account=name``."""
        return AccountTelemetry(self, name)

    def discovery(self) -> tuple[Gauge, Gauge, Gauge, Gauge]:
        """(last run successful, last success time, discovered flows, flows left out), registered
        on first use: an exporter whose accounts never turned discovery on shows none of them."""
        if self._discovery is None:
            successful = _live(Gauge, catalogue.DISCOVERY_SUCCESSFUL, self.registry)
            success_time = _live(Gauge, catalogue.DISCOVERY_SUCCESS_TIME, self.registry)
            flows = _live(Gauge, catalogue.DISCOVERED_FLOWS, self.registry)
            dropped = _live(Gauge, catalogue.DISCOVERED_FLOWS_DROPPED, self.registry)
            self._discovery = (successful, success_time, flows, dropped)
        return self._discovery

    def set_shard(self, shard: Shard) -> None:
        """Export the shard, so dashboards and alerts can tell replicas apart and count them."""
        _live(Gauge, catalogue.SHARD_INDEX, self.registry).set(shard.index)
        _live(Gauge, catalogue.SHARDS, self.registry).set(shard.count)

    def config_loaded(self) -> None:
        self.reload_successful.set(1)
        self.reload_success_time.set_to_current_time()

    def auth_failed(self, reason: str) -> None:
        """Count one request refused by basic auth."""
        self.auth_failures.labels(reason).inc()

    def reload_failed(self) -> None:
        self.reload_successful.set(0)

    def set_config_info(self, *, tls_insecure_skip_verify: bool) -> None:
        """Whether any account's vendor certificate goes unverified."""
        self.config.info(_info(catalogue.CONFIG_INFO, "true" if tls_insecure_skip_verify else "false"))


class AccountTelemetry:
    """One account's view of :class:`Telemetry`: what its client, discovery and poller report.

    It remembers every series it created, so that :meth:`forget` (the account was removed by a
    reload) takes them all out of /metrics.
    """

    def __init__(self, telemetry: Telemetry, name: str):
        self._telemetry = telemetry
        self.name = name
        self._series: set[tuple[MetricWrapperBase, tuple[str, ...]]] = set()
        self.preinitialise(QUERY_DETAIL)  # every account polls flows

    def _child(self, metric: _L, *labels: str) -> Any:
        values = (self.name, *labels)
        self._series.add((metric, values))
        return metric.labels(*values)

    def preinitialise(self, endpoint: str) -> None:
        """Create the series of an endpoint at 0, so that rate() works from its first request.

        queryDetail always; the discovery, enrichment and balance endpoints once their feature
        is on, so that an account without them shows no series for endpoints it never calls.
        """
        telemetry = self._telemetry
        self._child(telemetry.requests, endpoint)
        self._child(telemetry.retries, endpoint)
        self._child(telemetry.duration, endpoint)
        for code in DOCUMENTED_CODES:
            self._child(telemetry.errors, endpoint, ErrorKind.API.value, code)
        for kind in (ErrorKind.TIMEOUT, ErrorKind.NETWORK, ErrorKind.DECODE):
            self._child(telemetry.errors, endpoint, kind.value, "")
        for field, drift_kind in DRIFT_SERIES.get(endpoint, ()):
            self._child(telemetry.drift, endpoint, field, drift_kind)

    def started(self, host: str) -> None:
        """The account is watched, read from ``host``: its info and its pace series exist."""
        self._child(self._telemetry.account_info).info(_info(catalogue.ACCOUNT_INFO, host))
        self._child(self._telemetry.backoff).set(0)
        self._child(self._telemetry.clock_offset)

    def forget(self) -> None:
        """Remove every series of this account (it is no longer watched)."""
        for metric, values in self._series:
            try:
                metric.remove(*values)
            except KeyError:
                pass
        self._series.clear()

    # -- the poller -------------------------------------------------------------------------
    def backoff_set(self, seconds: float) -> None:
        self._child(self._telemetry.backoff).set(seconds)

    # -- what the client reports (exporter.itnio.client.RequestObserver) -------------------
    def observe(self, endpoint: str, seconds: float, error: ApiError | None) -> None:
        """Count one request that was sent, with its outcome."""
        telemetry = self._telemetry
        self._child(telemetry.requests, endpoint).inc()
        self._child(telemetry.duration, endpoint).observe(seconds)
        if error is not None:
            self._child(telemetry.errors, endpoint, error.kind.value, code_label(error.code)).inc()

    def retried(self, endpoint: str) -> None:
        self._child(self._telemetry.retries, endpoint).inc()

    def clock_offset_learnt(self, seconds: float) -> None:
        self._child(self._telemetry.clock_offset).set(seconds)

    def drifted(self, endpoint: str, field: str, kind: str) -> None:
        self._child(self._telemetry.drift, endpoint, field, kind).inc()

    # -- what discovery reports (exporter.polling.discovery.DiscoveryObserver) ---------------
    def discovery_on(self) -> None:
        self.preinitialise(QUERY_PAGE)
        successful, _, flows, dropped = self._telemetry.discovery()
        self._child(successful)
        self._child(flows)
        self._child(dropped)

    def discovered(self, flows: int, dropped: int) -> None:
        _, _, watched, left_out = self._telemetry.discovery()
        self._child(watched).set(flows)
        self._child(left_out).set(dropped)

    def discovery_failed(self) -> None:
        self._child(self._telemetry.discovery()[0]).set(0)

    def discovery_succeeded(self, at: float) -> None:
        successful, success_time, _, _ = self._telemetry.discovery()
        self._child(successful).set(1)
        self._child(success_time).set(at)


MAX_CODE = 999  # vendor codes seen are -1 to -26, HTTP statuses 100 to 599


def code_label(code: str) -> str:
    """The ``code`` label of a failure: the vendor code or HTTP status as sent, or ``other`` for one
    beyond +-MAX_CODE, so that a misbehaving API cannot create series without bound."""
    if not code:
        return code
    try:
        return code if abs(int(code)) <= MAX_CODE else "other"
    except ValueError:
        return "other"
