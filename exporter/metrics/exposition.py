"""Turning the accounts' Snapshots into the bytes of /metrics, once per change.

The flow and node series change only when a poll cycle ends, so they are rendered
once per snapshot (each account's on its own, then joined), in both formats and
pre-compressed, and every scrape reuses the bytes. Only the small request-level registry
(:mod:`exporter.metrics.telemetry`) and the accounts' balances (a few series of each balance
poller's immutable state, which goes stale on its own clock) are rendered per scrape and
appended. A scrape therefore costs about the bytes it sends.
Each family is built from its :mod:`exporter.metrics.catalogue` entry by one of the
small builders below, which :func:`snapshot_families` composes.

gzip: the cached part is deflated once and ended with a sync flush; each scrape
deflates only its own tail and appends it, with the combined CRC, so the answer is
one ordinary gzip member that every client can read.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics

from ..itnio.errors import ErrorKind
from ..itnio.model import STATES, UNKNOWN_STATE, state_name
from ..polling.balance import BalanceState
from ..polling.snapshot import FlowState, Snapshot
from . import catalogue
from .fastrender import render_both

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ALL_STATES = STATES + (UNKNOWN_STATE,)
ERROR_KINDS = tuple(kind.value for kind in ErrorKind)
_OM_EOF = b"# EOF\n"
# Rendering a snapshot this large (in series) is moved off the event loop.
OFFLOAD_SERIES = 2000
# Above OFFLOAD_SERIES, a whole answer (snapshot and request-level part) is reused for this
# long: rendering the live registry (~0.6 ms) and joining it to megabytes of cached bytes
# cost more than sending them. A new snapshot drops these answers at once.
LIVE_TTL = 1.0
# After a large snapshot is published, the heap is collected once and frozen (gc.freeze):
# the snapshot's objects are long-lived and acyclic, and left in generation 2 they make
# every full collection scan them all (~100 ms and more at thousands of flows, stalling
# the event loop and every scrape). Frozen objects are still freed by reference counting
# when the next snapshot replaces them; every UNFREEZE_EVERY-th time the whole heap is
# unfrozen and collected, so cyclic garbage that was frozen is not kept for ever.
UNFREEZE_EVERY = 10
_RENDERS_WITHOUT_GC: list[object] = []  # large renders running; the collector is off meanwhile


_Pause = Callable[[], None] | None
# Callable, not type[Metric]: the three constructors take different keyword arguments.
_FAMILY_TYPES: dict[str, Callable[..., Metric]] = {
    "counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "info": InfoMetricFamily
}


def family(metric: catalogue.Metric, value: float | None = None) -> Any:
    """An empty family for a catalogue entry (its series added by the caller), or, given
    ``value``, the one series of an entry without labels."""
    kind = _FAMILY_TYPES[metric.type]
    if value is not None:
        return kind(metric.name, metric.documentation, value=value)
    return kind(metric.name, metric.documentation, labels=metric.labels)


def snapshot_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """The metric families of the accounts' snapshots (flows, nodes and the cycles), in /metrics
    order: each family holds the series of every account, labelled ``account``.

    ``pause``, if given, is called every few hundred flows (see RenderedSnapshot.of)."""
    return [
        *poll_families(snapshots, pause),
        *detail_families(snapshots, pause),
        *node_families(snapshots, pause),
        *record_families(snapshots, pause),
        *call_families(snapshots, pause),
        *cycle_families(snapshots),
    ]


def _flows(snapshots: Sequence[Snapshot], pause: _Pause) -> Iterator[tuple[Snapshot, FlowState]]:
    """(snapshot, flow) for every flow of every snapshot, calling ``pause`` every 200."""
    index = 0
    for snapshot in snapshots:
        for flow in snapshot.flows:
            index += 1
            if pause is not None and index % 200 == 0:
                pause()
            yield snapshot, flow


def poll_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """How each flow's polls went, and its info (name, recall type, parent task)."""
    up, last_success = family(catalogue.FLOW_UP), family(catalogue.FLOW_LAST_SUCCESS)
    polls, poll_errors = family(catalogue.FLOW_POLLS), family(catalogue.FLOW_POLL_ERRORS)
    info = family(catalogue.FLOW_INFO)
    info_labels = catalogue.FLOW_INFO.info_labels
    for snapshot, flow in _flows(snapshots, pause):
        key = [snapshot.account, str(flow.key_id)]
        up.add_metric(key, 1.0 if flow.up else 0.0)
        if flow.last_success is not None:
            last_success.add_metric(key, flow.last_success)
        polls.add_metric(key, flow.polls)
        counts = dict(flow.errors)
        for kind in ERROR_KINDS:
            poll_errors.add_metric([*key, kind], counts.get(kind, 0))
        detail, record = flow.visible_detail, flow.record
        info.add_metric(key, dict(zip(info_labels, (
            _utf8(flow.name),
            detail.recall_type_name if detail else "",
            _opt(record.task_id) if record else "",
            _utf8(record.task_name) if record else "",
        ), strict=True)))
    return [up, last_success, polls, poll_errors, info]


def detail_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """Each flow's state and recall settings, from its last queryDetail answer (if not stale)."""
    status, state = family(catalogue.FLOW_STATUS), family(catalogue.FLOW_STATE)
    interval, attempts = family(catalogue.FLOW_RECALL_INTERVAL), family(catalogue.FLOW_RECALL_ATTEMPTS)
    for snapshot, flow in _flows(snapshots, pause):
        detail = flow.visible_detail
        if detail is None:
            continue
        key = [snapshot.account, str(flow.key_id)]
        status.add_metric(key, detail.status)
        current = state_name(detail.status)
        for name in ALL_STATES:
            state.add_metric([*key, name], 1.0 if name == current else 0.0)
        if detail.recall_interval_minutes is not None:  # None: unreadable in the answer (drift)
            interval.add_metric(key, detail.recall_interval_minutes * 60)
        if detail.recall_num is not None:
            attempts.add_metric(key, detail.recall_num)
    return [status, state, interval, attempts]


def node_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """Each flow's nodes: counted by state, one status series each up to max_nodes_per_flow."""
    nodes, node_status = family(catalogue.FLOW_NODES), family(catalogue.NODE_STATUS)
    dropped = family(catalogue.FLOW_NODES_DROPPED)
    for snapshot, flow in _flows(snapshots, pause):
        detail = flow.visible_detail
        if detail is None:
            continue
        max_nodes = snapshot.max_nodes_per_flow
        account, key = snapshot.account, str(flow.key_id)
        per_state = dict.fromkeys(ALL_STATES, 0)
        for node in detail.nodes:
            per_state[state_name(node.status)] += 1
        for node in detail.nodes[:max_nodes]:
            node_status.add_metric(
                [account, key, str(node.key_id), _opt(node.task_id), _opt(node.script_id)], node.status
            )
        dropped.add_metric([account, key], max(0, len(detail.nodes) - max_nodes))
        for name, count in per_state.items():
            nodes.add_metric([account, key, name], count)
    return [nodes, node_status, dropped]


def record_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """What discovery's flow list (recallFlow/queryPage) says of each flow it lists."""
    finished, created = family(catalogue.FLOW_FINISHED_ATTEMPTS), family(catalogue.FLOW_CREATED)
    for snapshot, flow in _flows(snapshots, pause):
        record = flow.record
        if record is None:
            continue
        key = [snapshot.account, str(flow.key_id)]
        if record.finish_num is not None:
            finished.add_metric(key, record.finish_num)
        if record.created is not None:
            created.add_metric(key, record.created)
    return [finished, created]


# The group-call counts (enrich.node_calls), by CallStats field.
_CALL_FIELDS = (
    (catalogue.NODE_NUMBERS, "numbers"),
    (catalogue.NODE_CALLS, "calls"),
    (catalogue.NODE_CALLS_SUCCEEDED, "succeeded"),
    (catalogue.NODE_CALLS_FAILED, "failed"),
    (catalogue.NODE_CALL_DURATION_AVERAGE, "acd_seconds"),
)


def call_families(snapshots: Sequence[Snapshot], pause: _Pause = None) -> list[Metric]:
    """The group-call counts of the nodes that have a status series (enrich.node_calls)."""
    families = [(family(metric), field) for metric, field in _CALL_FIELDS]
    for snapshot, flow in _flows(snapshots, pause):
        detail = flow.visible_detail
        if detail is None or not flow.calls:
            continue
        account, key = snapshot.account, str(flow.key_id)
        shown = {node.key_id: node.task_id for node in detail.nodes[: snapshot.max_nodes_per_flow]}
        for node_key, stats in flow.calls:
            if node_key not in shown:
                continue
            labels = [account, key, str(node_key), _opt(shown[node_key])]
            for calls, field in families:
                number = getattr(stats, field)
                if number is not None:
                    calls.add_metric(labels, number)
    return [calls for calls, _ in families]


def cycle_families(snapshots: Sequence[Snapshot]) -> list[Metric]:
    """Each account's poll cycles; the last one's start time once a cycle has completed."""
    duration, cycles = family(catalogue.POLL_DURATION), family(catalogue.POLL_CYCLES)
    flows, last = family(catalogue.FLOWS), family(catalogue.LAST_POLL)
    for snapshot in snapshots:
        account = [snapshot.account]
        duration.add_metric(account, snapshot.cycle_duration)
        cycles.add_metric(account, snapshot.cycles)
        flows.add_metric(account, len(snapshot.flows))
        if snapshot.cycles:
            last.add_metric(account, snapshot.cycle_started)
    return [duration, cycles, flows, *([last] if last.samples else [])]


def balance_families(states: Iterable[BalanceState], now: float) -> list[Metric]:
    """The accounts' balances at unix time ``now`` (none once stale), thresholds, intervals and last
    successes: only the families that have series, so an exporter with balance off shows none."""
    amounts = family(catalogue.ACCOUNT_BALANCE)
    threshold = family(catalogue.ACCOUNT_BALANCE_LOW_THRESHOLD)
    interval = family(catalogue.ACCOUNT_BALANCE_INTERVAL)
    success = family(catalogue.ACCOUNT_BALANCE_LAST_SUCCESS)
    for state in states:
        if not state.enabled:
            continue
        account = [state.account]
        balance = state.visible(now)
        if balance is not None:
            for kind, amount in balance.amounts:
                amounts.add_metric([*account, kind], amount)
        if state.low_threshold is not None:
            threshold.add_metric(account, state.low_threshold)
        interval.add_metric(account, state.interval)
        if state.last_success is not None:
            success.add_metric(account, state.last_success)
    return [metric for metric in (amounts, threshold, interval, success) if metric.samples]


def _yield_gil() -> None:
    time.sleep(0)


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _utf8(text: str) -> str:
    """``text`` as encodable UTF-8. YAML escapes can put surrogates in a config string; one
    unencodable name must not make every render fail: a pair becomes its character, a lone
    surrogate U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class _Families:
    """A collector that yields a fixed list of families, for prometheus_client's renderers."""

    def __init__(self, families: Iterable[Metric]):
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _render(families: list[Metric], openmetrics: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    if openmetrics:
        return generate_latest_openmetrics(registry).removesuffix(_OM_EOF)
    return generate_latest(registry)


class GzipPrefix:
    """A gzip stream for ``data`` left open, so that any tail can finish it cheaply."""

    __slots__ = ("head", "crc", "size")

    def __init__(self, data: bytes, level: int = 6):
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff"
        self.head = header + compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.crc = zlib.crc32(data)
        self.size = len(data)

    def finish(self, tail: bytes) -> bytes:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
        trailer = struct.pack("<II", zlib.crc32(tail, self.crc), (self.size + len(tail)) & 0xFFFFFFFF)
        return self.head + body + trailer


@dataclass(frozen=True, slots=True)
class RenderedSnapshot:
    """The cached bytes of the accounts' snapshots in every form /metrics may need."""

    text: bytes
    openmetrics: bytes
    text_gzip: GzipPrefix
    openmetrics_gzip: GzipPrefix
    series: int

    @classmethod
    def of(cls, snapshots: Sequence[Snapshot], cooperative: bool = False) -> RenderedSnapshot:
        """Render ``snapshots``. ``cooperative`` (in a worker thread): hand the GIL to the event
        loop every millisecond or so (time.sleep(0)), rather than make it wait for Python's
        5 ms switch interval on every I/O step of every scrape while a large render runs."""
        pause = _yield_gil if cooperative else None
        families = snapshot_families(snapshots, pause)
        both = render_both(families, pause)  # prometheus_client's bytes, several times faster
        if both is None:
            text, openmetrics = _render(families, openmetrics=False), _render(families, openmetrics=True)
        else:
            text, openmetrics = both
        return cls(
            text=text,
            openmetrics=openmetrics,
            text_gzip=GzipPrefix(text),
            openmetrics_gzip=GzipPrefix(openmetrics),
            series=sum(len(f.samples) for f in families),
        )


    @classmethod
    def join(cls, parts: Sequence[AccountRender], cooperative: bool = False) -> RenderedSnapshot:
        """The accounts' rendered families joined into one exposition: each family's HELP and TYPE
        once, then every account's series of it, in the accounts' order. The same bytes as
        :meth:`of` the accounts' snapshots (tests/metrics/test_exposition.py checks it)."""
        headers: dict[str, tuple[bytes, bytes]] = {}
        bodies: dict[str, tuple[list[bytes], list[bytes]]] = {}
        for part in parts:
            for name, text_head, text_body, om_head, om_body in part.families:
                if name not in headers:
                    headers[name] = (text_head, om_head)
                    bodies[name] = ([], [])
                bodies[name][0].append(text_body)
                bodies[name][1].append(om_body)
        if cooperative:
            _yield_gil()
        text = b"".join(headers[name][0] + b"".join(bodies[name][0]) for name in headers)
        openmetrics = b"".join(headers[name][1] + b"".join(bodies[name][1]) for name in headers)
        return cls(
            text=text,
            openmetrics=openmetrics,
            text_gzip=GzipPrefix(text),
            openmetrics_gzip=GzipPrefix(openmetrics),
            series=sum(part.series for part in parts),
        )


def _split_header(rendered: bytes) -> tuple[bytes, bytes]:
    """(the HELP and TYPE lines, the samples) of one rendered family."""
    end = rendered.index(b"\n", rendered.index(b"\n") + 1) + 1
    return rendered[:end], rendered[end:]


@dataclass(frozen=True, slots=True)
class AccountRender:
    """One account's snapshot rendered, family by family, for :meth:`RenderedSnapshot.join`:
    an account whose snapshot did not change is not rendered again when another one publishes."""

    snapshot: Snapshot
    families: tuple[tuple[str, bytes, bytes, bytes, bytes], ...]  # name, text head and body, OpenMetrics head and body
    series: int

    @classmethod
    def of(cls, snapshot: Snapshot, cooperative: bool = False) -> AccountRender:
        pause = _yield_gil if cooperative else None
        families = snapshot_families([snapshot], pause)
        out = []
        for metric in families:
            both = render_both([metric], pause)
            if both is None:
                both = _render([metric], openmetrics=False), _render([metric], openmetrics=True)
            text_head, text_body = _split_header(both[0])
            om_head, om_body = _split_header(both[1])
            out.append((metric.name, text_head, text_body, om_head, om_body))
        return cls(snapshot, tuple(out), sum(len(f.samples) for f in families))


def render_accounts(
    snapshots: Sequence[Snapshot], rendered: dict[str, AccountRender], cooperative: bool = False
) -> tuple[dict[str, AccountRender], RenderedSnapshot]:
    """Render the snapshots not rendered yet (``rendered``: by account, from the last time), and
    join all: the accounts' renders now, and the exposition."""
    parts = {}
    for snapshot in snapshots:
        part = rendered.get(snapshot.account)
        if part is None or part.snapshot is not snapshot:
            part = AccountRender.of(snapshot, cooperative)
        parts[snapshot.account] = part
    return parts, RenderedSnapshot.join(list(parts.values()), cooperative)


def series_count(snapshots: Sequence[Snapshot]) -> int:
    """A cheap upper estimate of the series the snapshots render to."""
    total = 0
    for snapshot in snapshots:
        total += 4 + 14 * len(snapshot.flows)
        for flow in snapshot.flows:
            total += 5 * len(flow.calls)
            if flow.detail is not None:
                total += min(len(flow.detail.nodes), snapshot.max_nodes_per_flow)
    return total


class Exposition:
    """Holds every account's latest snapshot and balance, and assembles /metrics answers from them.

    Each account publishes its own snapshots (:meth:`publish`). A snapshot is rendered once,
    on its own (:class:`AccountRender`), and the accounts' renders are joined into the /metrics
    bytes (:func:`render_accounts`). Publications that arrive while a render runs are taken
    together by the next one, so N accounts ending their cycles at once cost about two joins,
    not N. :meth:`publish` returns once a render holding its snapshot is shown.
    """

    def __init__(self, live_registry: CollectorRegistry):
        self.live_registry = live_registry
        self._snapshots: dict[str, Snapshot] = {}
        self._balances: dict[str, BalanceState] = {}
        self._shown: tuple[Snapshot, ...] = ()
        self.rendered = RenderedSnapshot.of(())
        self._parts: dict[str, AccountRender] = {}  # the accounts' renders behind ``rendered``
        self._answers: dict[tuple[bool, bool], tuple[float, bytes]] = {}  # (openmetrics, gzip)
        self._large_publishes = 0
        self._changes = 0  # changes to the set of snapshots so far
        self._rendered_changes = 0  # how many of them the shown render holds
        self._render_task: asyncio.Task[None] | None = None

    # -- what others read --------------------------------------------------------------------
    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        """The snapshots /metrics shows, one per account, in the order the accounts were added."""
        return self._shown

    @property
    def balances(self) -> dict[str, BalanceState]:
        """The last balance state of each account that reads its balance."""
        return dict(self._balances)

    @property
    def ready(self) -> bool:
        """Every account has completed a poll cycle (and there is at least one)."""
        return bool(self._shown) and all(snapshot.ready for snapshot in self._shown)

    # -- what the accounts give it -------------------------------------------------------------
    def publish_balance(self, state: BalanceState) -> None:
        """Show ``state`` from the next scrape on (an account's balance poller, after each query)."""
        self._balances[state.account] = state
        self._answers = {}

    async def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` its account's current one; returns once /metrics shows it."""
        self._snapshots[snapshot.account] = snapshot
        await self._rendered()

    async def remove(self, account: str) -> None:
        """Drop an account's series (it is no longer watched); returns once /metrics no longer shows them."""
        self._balances.pop(account, None)
        if self._snapshots.pop(account, None) is not None:
            await self._rendered()
        self._answers = {}

    async def _rendered(self) -> None:
        self._changes += 1
        wanted = self._changes
        while self._rendered_changes < wanted:
            if self._render_task is None:
                self._render_task = asyncio.create_task(self._render(), name="render")
            task = self._render_task
            try:
                await asyncio.shield(task)
            finally:
                if task.done() and self._render_task is task:
                    self._render_task = None

    async def _render(self) -> None:
        """Render the snapshots that changed, join them with the others (in a worker thread when
        large) and show them."""
        changes, snapshots = self._changes, tuple(self._snapshots.values())
        if series_count(snapshots) > OFFLOAD_SERIES:
            # The render allocates a few objects per series, all acyclic and soon freed by
            # reference counting; left on, the cyclic collector would rescan them (and the
            # heap) several times per render, 50-120 ms each with the GIL held at 5,000 flows.
            token = object()
            _RENDERS_WITHOUT_GC.append(token)
            gc.disable()
            try:
                parts, rendered = await asyncio.get_running_loop().run_in_executor(
                    None, render_accounts, snapshots, self._parts, True
                )
            finally:
                _RENDERS_WITHOUT_GC.remove(token)
                if not _RENDERS_WITHOUT_GC:
                    gc.enable()
        else:
            parts, rendered = render_accounts(snapshots, self._parts)
        self._shown, self.rendered, self._parts = snapshots, rendered, parts
        self._rendered_changes = changes
        self._answers = {}
        if rendered.series > OFFLOAD_SERIES:
            self._settle_heap()

    def _settle_heap(self) -> None:
        self._large_publishes += 1
        if self._large_publishes % UNFREEZE_EVERY == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()

    def body(self, *, openmetrics: bool, gzip: bool) -> bytes:
        """The full /metrics body: cached snapshot bytes plus the live request metrics."""
        large = self.rendered.series > OFFLOAD_SERIES
        if large:
            now = time.monotonic()
            hit = self._answers.get((openmetrics, gzip))
            if hit is not None and hit[0] > now:
                return hit[1]
        body = self._assemble(openmetrics, gzip)
        if large:
            self._answers[(openmetrics, gzip)] = (now + LIVE_TTL, body)
        return body

    def _assemble(self, openmetrics: bool, gzip: bool) -> bytes:
        balance = balance_families(self._balances.values(), time.time())
        head = _render(balance, openmetrics) if balance else b""
        if openmetrics:
            tail = head + generate_latest_openmetrics(self.live_registry)
            cached, prefix = self.rendered.openmetrics, self.rendered.openmetrics_gzip
        else:
            tail = head + generate_latest(self.live_registry)
            cached, prefix = self.rendered.text, self.rendered.text_gzip
        return prefix.finish(tail) if gzip else cached + tail
