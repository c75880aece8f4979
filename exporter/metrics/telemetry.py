"""The exporter's own counters: requests sent to the vendor, their errors and latency.

These change with every request, so they live in a prometheus_client registry of
their own (never the global one) and are rendered on each scrape; they are a few
dozen series at most. Per-flow data are rendered once per poll cycle instead
(see :mod:`exporter.metrics.exposition`).
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from .. import __version__
from ..polling.shard import Shard
from ..vendor.decoding import DRIFT_SERIES
from ..vendor.endpoints import DOCUMENTED_CODES, QUERY_DETAIL, QUERY_PAGE
from ..vendor.errors import ApiError, ErrorKind

# `_created` series double every counter for little use here.
disable_created_metrics()

BG = " Data come from a background poll of the ITNIO API, not from the scrape."
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


class Telemetry:
    """Owns the registry of request-level metrics; the API client reports into it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "itnio_api_requests",
            "Requests sent to the ITNIO API, by endpoint." + BG,
            ["endpoint"],
            registry=self.registry,
        )
        self.errors = Counter(
            "itnio_api_errors",
            "Failed ITNIO API requests, by endpoint, kind (api, http, timeout, network, decode) "
            "and code (vendor code for api, HTTP status for http, empty otherwise)." + BG,
            ["endpoint", "kind", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "itnio_api_request_duration_seconds",
            "Duration of ITNIO API requests, by endpoint." + BG,
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "itnio_api_retries",
            "Requests to the ITNIO API that were retries of a failed one (timeouts, network errors, 5xx, "
            "429, and one retry after correcting the clock on -16)." + BG,
            ["endpoint"],
            registry=self.registry,
        )
        self.drift = Counter(
            "itnio_api_schema_drift",
            "Answers of the ITNIO API that deviated from the documented types but were still used, by endpoint, "
            "documented field (other for any other) and kind: string_number (a number sent as text), missing (an "
            "optional documented field absent), unreadable_node (a nodeList entry dropped)." + BG,
            ["endpoint", "field", "kind"],
            registry=self.registry,
        )
        self.clock_offset = Gauge(
            "itnio_exporter_clock_offset_seconds",
            "Offset added to the local clock when signing, learnt from the API's Date header after a "
            "timestamp-expired (-16) answer." + BG,
            registry=self.registry,
        )
        self.backoff = Gauge(
            "itnio_exporter_backoff_seconds",
            "Current back-off of the whole poller after authentication (-1) or IP restriction (-2) "
            "errors; 0 at the normal pace." + BG,
            registry=self.registry,
        )
        self.reload_successful = Gauge(
            "itnio_exporter_config_last_reload_successful",
            "1 if the last attempt to load the config file succeeded, 0 if it failed (the previous config "
            "keeps running)." + BG,
            registry=self.registry,
        )
        self.reload_success_time = Gauge(
            "itnio_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the config file." + BG,
            registry=self.registry,
        )
        build = Info(
            "itnio_exporter_build",
            "Build information of itnio-exporter: 1, with the version and Python version as labels." + BG,
            registry=self.registry,
        )
        build.info({"version": __version__, "python_version": platform.python_version()})
        self.config = Info(
            "itnio_exporter_config",
            "Settings of itnio-exporter worth alerting on: 1, with the settings as labels." + BG,
            registry=self.registry,
        )
        self.set_config_info(tls_insecure_skip_verify=False)
        self._discovery: tuple[Gauge, Gauge, Gauge] | None = None
        self.preinitialise(QUERY_DETAIL)

    def preinitialise(self, endpoint: str) -> None:
        """Create the series of an endpoint at 0, so that rate() works from its first request.

        queryDetail always; the discovery and enrichment endpoints once their feature is on,
        so that an exporter without them shows no series for endpoints it never calls.
        """
        self.requests.labels(endpoint)
        self.retries.labels(endpoint)
        self.duration.labels(endpoint)
        for code in DOCUMENTED_CODES:
            self.errors.labels(endpoint, ErrorKind.API.value, code)
        for kind in (ErrorKind.TIMEOUT, ErrorKind.NETWORK, ErrorKind.DECODE):
            self.errors.labels(endpoint, kind.value, "")
        for field, drift_kind in DRIFT_SERIES.get(endpoint, ()):
            self.drift.labels(endpoint, field, drift_kind)

    def discovery(self) -> tuple[Gauge, Gauge, Gauge]:
        """(last run successful, last success time, discovered flows), registered on first use:
        an exporter that never turned discovery on shows none of them."""
        if self._discovery is None:
            successful = Gauge(
                "itnio_exporter_discovery_last_run_successful",
                "1 if the last discovery run read every page of recallFlow/queryPage, 0 if it failed (the "
                "previous set of discovered flows is kept)." + BG,
                registry=self.registry,
            )
            success_time = Gauge(
                "itnio_exporter_discovery_last_success_timestamp_seconds",
                "Unix time of the last discovery run that read every page of recallFlow/queryPage." + BG,
                registry=self.registry,
            )
            flows = Gauge(
                "itnio_exporter_discovered_flows",
                "Recall flows watched because discovery found them (whether or not flows: lists them too)." + BG,
                registry=self.registry,
            )
            self._discovery = (successful, success_time, flows)
        return self._discovery

    # -- what the client reports (exporter.vendor.client.RequestObserver) -------------------
    def retried(self, endpoint: str) -> None:
        self.retries.labels(endpoint).inc()

    def clock_offset_learnt(self, seconds: float) -> None:
        self.clock_offset.set(seconds)

    def drifted(self, endpoint: str, field: str, kind: str) -> None:
        self.drift.labels(endpoint, field, kind).inc()

    # -- what discovery reports (exporter.polling.discovery.DiscoveryObserver) ---------------
    def discovery_on(self) -> None:
        self.preinitialise(QUERY_PAGE)
        self.discovery()

    def discovered(self, flows: int) -> None:
        self.discovery()[2].set(flows)

    def discovery_failed(self) -> None:
        self.discovery()[0].set(0)

    def discovery_succeeded(self, at: float) -> None:
        successful, success_time, _ = self.discovery()
        successful.set(1)
        success_time.set(at)

    def set_shard(self, shard: Shard) -> None:
        """Export the shard, so dashboards and alerts can tell replicas apart and count them."""
        Gauge(
            "itnio_exporter_shard_index",
            "Index of the shard of flows this exporter polls (--shard.index), from 0." + BG,
            registry=self.registry,
        ).set(shard.index)
        Gauge(
            "itnio_exporter_shards",
            "Number of shards the flows are split into (--shard.count); 1 when not sharded." + BG,
            registry=self.registry,
        ).set(shard.count)

    def config_loaded(self) -> None:
        self.reload_successful.set(1)
        self.reload_success_time.set_to_current_time()

    def reload_failed(self) -> None:
        self.reload_successful.set(0)

    def set_config_info(self, *, tls_insecure_skip_verify: bool) -> None:
        self.config.info({"tls_insecure_skip_verify": "true" if tls_insecure_skip_verify else "false"})

    def observe(self, endpoint: str, seconds: float, error: ApiError | None) -> None:
        """Count one request that was sent, with its outcome."""
        self.requests.labels(endpoint).inc()
        self.duration.labels(endpoint).observe(seconds)
        if error is not None:
            self.errors.labels(endpoint, error.kind.value, error.code).inc()
