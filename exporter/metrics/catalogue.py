"""Every metric the exporter can emit, declared once.

:mod:`exporter.metrics.telemetry` builds its live prometheus_client objects from these
entries and :mod:`exporter.metrics.exposition` builds the snapshot's families from them;
no metric name, help text or label list is written anywhere else.

The rules every entry follows (``tests/metrics/test_catalogue.py`` checks them):

- ``name`` is the family name: without ``_total`` for a counter and without ``_info`` for
  an info; the exposition formats add those suffixes (see :attr:`Metric.exposed_name`).
  Only counters get ``_total``; a value the vendor may revise is a gauge.
- Values are in base units: seconds (``_seconds``), unix times (``_timestamp_seconds``),
  plain counts; never minutes or milliseconds.
- ``help`` is one or more sentences ending with a period. The documentation of every family
  whose values come from the background poll is ``help`` followed by :data:`BACKGROUND`, so
  that nobody expects a scrape to fetch them; the few that count what happens on this
  exporter's own HTTP side (``background=False``) are documented by ``help`` alone.
- Every series about one vendor account carries ``account`` first (the operator's name for it,
  never its key); only process-wide ones (build, config, reload, HTTP auth, shard) do not.
- Labels are bounded. The only identifiers among them are the account and the vendor's ids of
  things the operator chose to watch: ``key_id`` (a recall flow), ``node_key_id`` (a node of it), and
  ``task_id`` and ``script_id`` (the group-call task and script of a node, or of a flow's
  parent task). Others take values from a short fixed set (``state``, ``kind``, ``code``,
  ``endpoint`` ...).
- An info's ``labels`` identify its series; its ``info_labels`` carry the information.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram", "info"]

BACKGROUND = " Data come from a background poll of the ITNIO API, not from the scrape."
_SUFFIX = {"counter": "_total", "info": "_info"}


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family the exporter can emit."""

    name: str  # family name: no _total (counter) nor _info (info) suffix
    type: MetricType
    help: str  # without BACKGROUND
    labels: tuple[str, ...] = ()
    info_labels: tuple[str, ...] = ()  # info only: the labels its value sets
    buckets: tuple[float, ...] = ()  # histogram only: upper bounds, without +Inf
    background: bool = True  # its values come from the background poll of the API

    @property
    def documentation(self) -> str:
        """The HELP text as exposed."""
        return self.help + BACKGROUND if self.background else self.help

    @property
    def exposed_name(self) -> str:
        """The name in the text format's HELP and TYPE lines: ``_total`` for counters,
        ``_info`` for infos, the base name of a histogram's ``_bucket``/``_sum``/``_count``."""
        return self.name + _SUFFIX.get(self.type, "")


_STATES = "0 pending, 1 in progress, 2 completed, 3 cancelled, 4 execution exception."
_NODE = ("account", "key_id", "node_key_id", "task_id")  # a node's group-call task

# -- per flow, from the snapshot (exporter.metrics.exposition) ------------------------------
FLOW_UP = Metric(
    "itnio_recall_flow_up", "gauge", "1 if the last poll of this recall flow succeeded, else 0.", ("account", "key_id")
)
FLOW_LAST_SUCCESS = Metric(
    "itnio_recall_flow_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful poll of this recall flow.",
    ("account", "key_id"),
)
FLOW_POLLS = Metric(
    "itnio_recall_flow_polls", "counter", "Polls of this recall flow, successful or not.", ("account", "key_id")
)
FLOW_POLL_ERRORS = Metric(
    "itnio_recall_flow_poll_errors",
    "counter",
    "Failed polls of this recall flow, by error kind (api, http, timeout, network, decode).",
    ("account", "key_id", "kind"),
)
FLOW_INFO = Metric(
    "itnio_recall_flow",
    "info",
    "Recall flow metadata: the name (from the config, else the discovered taskName), the recall type "
    "(all or failed), and the parent group-call task_id and task_name from discovery (empty when the flow "
    "was not discovered).",
    ("account", "key_id"),
    info_labels=("name", "recall_type", "task_id", "task_name"),
)
FLOW_STATUS = Metric(
    "itnio_recall_flow_status", "gauge", "Recall flow state as the API reports it: " + _STATES, ("account", "key_id")
)
FLOW_STATE = Metric(
    "itnio_recall_flow_state",
    "gauge",
    "1 for the current state of the recall flow, 0 for the others.",
    ("account", "key_id", "state"),
)
FLOW_RECALL_INTERVAL = Metric(
    "itnio_recall_flow_recall_interval_seconds",
    "gauge",
    "Time between recall rounds of the flow (recallInterval).",
    ("account", "key_id"),
)
FLOW_RECALL_ATTEMPTS = Metric(
    "itnio_recall_flow_recall_attempts",
    "gauge",
    "Number of recall attempts configured for the flow (recallNum).",
    ("account", "key_id"),
)
FLOW_NODES = Metric(
    "itnio_recall_flow_nodes",
    "gauge",
    "Number of nodes (recall rounds) of the flow in each state.",
    ("account", "key_id", "state"),
)
NODE_STATUS = Metric(
    "itnio_recall_node_status",
    "gauge",
    "State of one node (recall round) of a flow: " + _STATES,
    ("account", "key_id", "node_key_id", "task_id", "script_id"),
)
FLOW_NODES_DROPPED = Metric(
    "itnio_recall_flow_nodes_dropped",
    "gauge",
    "Nodes of the flow beyond poll.max_nodes_per_flow, which get no itnio_recall_node_status series "
    "(itnio_recall_flow_nodes still counts them).",
    ("account", "key_id"),
)
FLOW_FINISHED_ATTEMPTS = Metric(
    "itnio_recall_flow_finished_attempts",
    "gauge",
    "Recall attempts the flow has done (finishNum of recallFlow/queryPage); discovered flows only.",
    ("account", "key_id"),
)
FLOW_CREATED = Metric(
    "itnio_recall_flow_created_timestamp_seconds",
    "gauge",
    "Unix time at which the flow was created (createTime of recallFlow/queryPage, read in api.timezone); "
    "discovered flows only.",
    ("account", "key_id"),
)
NODE_NUMBERS = Metric(
    "itnio_recall_node_numbers",
    "gauge",
    "Phone numbers in the group-call task of the node (numCnt of group/call/detail).",
    _NODE,
)
NODE_CALLS = Metric(
    "itnio_recall_node_calls",
    "gauge",
    "Calls made by the group-call task of the node (callTotal of group/call/detail); a gauge, as the "
    "vendor may revise it.",
    _NODE,
)
NODE_CALLS_SUCCEEDED = Metric(
    "itnio_recall_node_calls_succeeded",
    "gauge",
    "Successful (answered) calls of the group-call task of the node (success of group/call/detail).",
    _NODE,
)
NODE_CALLS_FAILED = Metric(
    "itnio_recall_node_calls_failed",
    "gauge",
    "Failed (unanswered) calls of the group-call task of the node (fail of group/call/detail).",
    _NODE,
)
NODE_CALL_DURATION_AVERAGE = Metric(
    "itnio_recall_node_call_duration_average_seconds",
    "gauge",
    "Average duration of the answered calls of the group-call task of the node (acd of "
    "group/call/detail, assumed to be seconds).",
    _NODE,
)

# -- per poll cycle, from the snapshot ------------------------------------------------------
POLL_DURATION = Metric(
    "itnio_exporter_poll_duration_seconds", "gauge", "Duration of the last complete poll cycle over all flows of the account.",
    ("account",),
)
POLL_CYCLES = Metric(
    "itnio_exporter_poll_cycles", "counter", "Poll cycles of the account completed since the exporter started.",
    ("account",),
)
FLOWS = Metric(
    "itnio_exporter_flows", "gauge", "Number of recall flows the exporter watches in the account.", ("account",)
)
LAST_POLL = Metric(
    "itnio_exporter_last_poll_timestamp_seconds", "gauge", "Unix time at which the last complete poll cycle started.",
    ("account",),
)

# -- live, per request and event (exporter.metrics.telemetry) -------------------------------
API_REQUESTS = Metric(
    "itnio_api_requests", "counter", "Requests sent to the ITNIO API, by endpoint.", ("account", "endpoint")
)
API_ERRORS = Metric(
    "itnio_api_errors",
    "counter",
    "Failed ITNIO API requests, by endpoint, kind (api, http, timeout, network, decode) "
    "and code (vendor code for api, HTTP status for http, empty otherwise).",
    ("account", "endpoint", "kind", "code"),
)
API_REQUEST_DURATION = Metric(
    "itnio_api_request_duration_seconds",
    "histogram",
    "Duration of ITNIO API requests, by endpoint.",
    ("account", "endpoint"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
API_RETRIES = Metric(
    "itnio_api_retries",
    "counter",
    "Requests to the ITNIO API that were retries of a failed one (timeouts, network errors, 5xx, "
    "429, and one retry after correcting the clock on -16).",
    ("account", "endpoint"),
)
API_SCHEMA_DRIFT = Metric(
    "itnio_api_schema_drift",
    "counter",
    "Answers of the ITNIO API that deviated from the documented types but were still used, by endpoint, "
    "documented field (other for any other) and kind: string_number (a number sent as text), missing (an "
    "optional documented field absent), unreadable (an optional number that is not one, or negative: left out), "
    "unreadable_node (a nodeList entry dropped), too_long (vendor text cut at its cap), excess_records (a "
    "queryPage page held more records than the size asked for; the rest were dropped).",
    ("account", "endpoint", "field", "kind"),
)
CLOCK_OFFSET = Metric(
    "itnio_exporter_clock_offset_seconds",
    "gauge",
    "Offset added to the local clock when signing, learnt from the API's Date header after a "
    "timestamp-expired (-16) answer.",
    ("account",),
)
BACKOFF = Metric(
    "itnio_exporter_backoff_seconds",
    "gauge",
    "Current back-off of the account's poller after authentication (-1), IP restriction (-2) or "
    "user locked (-13) errors; 0 at the normal pace.",
    ("account",),
)
CONFIG_RELOAD_SUCCESSFUL = Metric(
    "itnio_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last attempt to load the config file succeeded, 0 if it failed (the previous config keeps running).",
)
CONFIG_RELOAD_SUCCESS_TIME = Metric(
    "itnio_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful load of the config file.",
)
HTTP_AUTH_FAILURES = Metric(
    "itnio_exporter_http_auth_failures",
    "counter",
    "Requests to this exporter refused by basic auth, by reason: missing (no credentials), malformed "
    "(not Basic user:password), unknown_user, wrong_password, rejected_busy (too many logins being "
    "checked at once: answered 429).",
    ("reason",),
    background=False,
)
BUILD_INFO = Metric(
    "itnio_exporter_build",
    "info",
    "Build information of itnio-exporter: 1, with the version and Python version as labels.",
    info_labels=("version", "python_version"),
)
CONFIG_INFO = Metric(
    "itnio_exporter_config",
    "info",
    "Settings of itnio-exporter worth alerting on: 1, with the settings as labels.",
    info_labels=("tls_insecure_skip_verify",),
)
SHARD_INDEX = Metric(
    "itnio_exporter_shard_index",
    "gauge",
    "Index of the shard of flows this exporter polls (--shard.index), from 0.",
)
SHARDS = Metric(
    "itnio_exporter_shards",
    "gauge",
    "Number of shards the flows are split into (--shard.count); 1 when not sharded.",
)
DISCOVERY_SUCCESSFUL = Metric(
    "itnio_exporter_discovery_last_run_successful",
    "gauge",
    "1 if the last discovery run read every page of recallFlow/queryPage, 0 if it failed or a reload "
    "that changed its settings cut it short (the previous set of discovered flows is kept).",
    ("account",),
)
DISCOVERY_SUCCESS_TIME = Metric(
    "itnio_exporter_discovery_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the last discovery run that read every page of recallFlow/queryPage.",
    ("account",),
)
DISCOVERED_FLOWS = Metric(
    "itnio_exporter_discovered_flows",
    "gauge",
    "Recall flows watched because discovery found them (whether or not flows: lists them too).",
    ("account",),
)
DISCOVERED_FLOWS_DROPPED = Metric(
    "itnio_exporter_discovered_flows_dropped",
    "gauge",
    "Recall flows the last discovery run found but does not watch, as discovery.max_flows leaves no room "
    "for them (neither polled nor exported).",
    ("account",),
)

# -- the account balance, from the balance poller's state (exporter.metrics.exposition) ------
ACCOUNT_BALANCE = Metric(
    "itnio_account_balance",
    "gauge",
    "Balance of the ITNIO account as getBalance reports it, in the account's quote currency (the API "
    "does not say which), by kind: actual (balance), gift (gift) and credit (credit); what can be spent "
    "is their sum. Absent once the last successful query is older than 3 x balance.interval.",
    ("account", "kind"),
)
ACCOUNT_BALANCE_LOW_THRESHOLD = Metric(
    "itnio_account_balance_low_threshold",
    "gauge",
    "The balance.low_threshold setting: the available balance (the sum of itnio_account_balance) below "
    "which ItnioBalanceLow fires, in the account's quote currency.",
    ("account",),
)
ACCOUNT_BALANCE_INTERVAL = Metric(
    "itnio_account_balance_interval_seconds",
    "gauge",
    "The balance.interval setting: how often getBalance is queried. The balance series go once the last "
    "successful query is older than 3 x this, and ItnioBalanceUnknown fires.",
    ("account",),
)
ACCOUNT_BALANCE_LAST_SUCCESS = Metric(
    "itnio_account_balance_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful query of the account balance (getBalance).",
    ("account",),
)

ACCOUNT_INFO = Metric(
    "itnio_account",
    "info",
    "The ITNIO accounts this exporter watches: 1 per account, with the API host it is read from "
    "(never its key).",
    ("account",),
    info_labels=("host",),
)

# In the order /metrics shows them (when each is shown at all).
METRICS: tuple[Metric, ...] = (
    FLOW_UP, FLOW_LAST_SUCCESS, FLOW_POLLS, FLOW_POLL_ERRORS, FLOW_INFO, FLOW_STATUS, FLOW_STATE,
    FLOW_RECALL_INTERVAL, FLOW_RECALL_ATTEMPTS, FLOW_NODES, NODE_STATUS, FLOW_NODES_DROPPED,
    FLOW_FINISHED_ATTEMPTS, FLOW_CREATED, NODE_NUMBERS, NODE_CALLS, NODE_CALLS_SUCCEEDED, NODE_CALLS_FAILED,
    NODE_CALL_DURATION_AVERAGE, POLL_DURATION, POLL_CYCLES, FLOWS, LAST_POLL,
    API_REQUESTS, API_ERRORS, API_REQUEST_DURATION, API_RETRIES, API_SCHEMA_DRIFT, CLOCK_OFFSET, BACKOFF,
    CONFIG_RELOAD_SUCCESSFUL, CONFIG_RELOAD_SUCCESS_TIME, HTTP_AUTH_FAILURES, BUILD_INFO, CONFIG_INFO,
    SHARD_INDEX, SHARDS, DISCOVERY_SUCCESSFUL, DISCOVERY_SUCCESS_TIME, DISCOVERED_FLOWS,
    DISCOVERED_FLOWS_DROPPED,
    ACCOUNT_BALANCE, ACCOUNT_BALANCE_LOW_THRESHOLD, ACCOUNT_BALANCE_INTERVAL, ACCOUNT_BALANCE_LAST_SUCCESS, ACCOUNT_INFO,
)
BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}


def exposed_names() -> tuple[str, ...]:
    """The names in /metrics' HELP and TYPE lines (text format), in catalogue order:
    ``itnio_api_requests_total``, ``itnio_recall_flow_info``, ``itnio_api_request_duration_seconds`` ..."""
    return tuple(metric.exposed_name for metric in METRICS)
