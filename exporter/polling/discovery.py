"""Discovery: watch the flows that ``POST /voice/recallFlow/queryPage`` lists.

Turned on by ``discovery.enabled``. Every ``discovery.refresh`` the whole list of flows
created within ``discovery.lookback`` (optionally filtered by ``discovery.task_name``)
is read, page by page, and the account's poller watches the union of those flows and
the static ``flows:`` list (:meth:`~exporter.polling.poller.Poller.set_discovered`: a
static flow keeps its configured name; a discovered one is named after its taskName;
flows that stay keep their data, new ones are polled at once, and any sharding applies
to discovered flows as to static ones).

- A run is all or nothing: if any page fails, the previous set is kept, so no flow
  vanishes because page 3 timed out.
- The list may change while it is read (a flow created between page 1 and page 2
  shifts the later pages). Records are merged by keyId, so a record read twice counts
  once; if the ``total`` changed between pages, or fewer distinct flows were read than
  the last page's total, the list is read again (up to :data:`MAX_PASSES` passes) and
  the passes are merged, so a flow that was in the list throughout is never lost.
- ``endTime`` is :data:`END_MARGIN` ahead of the local clock, so that flows created
  during the run, or under a vendor clock a little ahead of ours, are listed.
- A discovered flow that is no longer listed (it left the lookback window, or no longer
  matches) stays watched until it has ended (status 2, 3 or 4 in its last queryDetail
  answer, or in its last record when it was never polled), or until queryDetail says
  it does not exist (-24); then it leaves.
- ``discovery.max_flows`` caps the flows watched in all. The ``flows:`` list is always
  watched; discovered flows it does not list fill the room left, in this order: those
  already watched (so the set is stable from run to run), then the newest by createTime
  (none last), then the highest keyId. The rest are left out: not polled, not kept,
  counted in ``itnio_exporter_discovered_flows_dropped``, and logged when the cap starts
  or stops leaving flows out (not every run). Every shard applies the same cap to the
  same list, so the shards still split one set.
- A page holding more records than the ``size`` asked for is read up to ``size`` (the
  decoder counts the rest as drift); such a list cannot be read whole, so it is not read
  again for being shorter than its ``total``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Protocol

import structlog

from ..aio import cancel, every
from ..config import AccountConfig, DiscoveryConfig
from ..itnio.endpoints import CODE_NOT_EXISTING, QUERY_PAGE
from ..itnio.errors import ApiError, NotSent
from ..itnio.model import NODE_ENDED_STATUSES, VENDOR_TIME_FORMAT, FlowPage, FlowRecord
from .poller import Poller
from .snapshot import DiscoveryRun, FlowState

log = structlog.get_logger("exporter.polling.discovery")

MAX_PASSES = 3  # reads of the whole list in one run while it keeps changing under us
MAX_PAGES = 1000  # 100,000 flows at 100 a page: a `pages` beyond this is not believed
END_MARGIN = 3600.0  # seconds
MAX_ERROR = 300  # characters of a failed run's error kept for the flows page


class PageSource(Protocol):
    async def query_page(
        self, current: int, size: int, params: dict[str, str], zone: tzinfo, deadline: float | None = None
    ) -> FlowPage: ...


class DiscoveryObserver(Protocol):
    """Where discovery reports its runs (the exporter's telemetry implements it)."""

    def discovery_on(self) -> None:
        """Discovery is on: its series exist from now on."""

    def discovered(self, flows: int, dropped: int) -> None:
        """``flows`` are watched because discovery found them; ``dropped`` more were found but
        discovery.max_flows leaves them out."""

    def discovery_failed(self) -> None:
        """A run failed; the previous set is kept."""

    def discovery_succeeded(self, at: float) -> None:
        """A run read every page, at unix time ``at``."""


def _same_source(old: AccountConfig | None, new: AccountConfig) -> bool:
    """A run under ``old`` reads what one under ``new`` would (same discovery and api sections)."""
    return old is not None and old.discovery == new.discovery and old.api == new.api


def vendor_time(unix: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(unix, zone).strftime(VENDOR_TIME_FORMAT)


def list_params(settings: DiscoveryConfig, zone: tzinfo, now: float) -> dict[str, str]:
    """The queryPage filter of a run at unix time ``now``: the lookback window, and the task name if set."""
    params = {"strTime": vendor_time(now - settings.lookback, zone), "endTime": vendor_time(now + END_MARGIN, zone)}
    if settings.task_name:
        params["taskName"] = settings.task_name
    return params


class Discovery:
    """The discovery source of one account: owns the set of discovered flows and the task that refreshes it."""

    def __init__(
        self,
        poller: Poller,
        client: Callable[[], PageSource | None],
        telemetry: DiscoveryObserver,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._poller = poller
        self._client = client  # the current client (it is replaced when api: changes on reload)
        self._telemetry = telemetry
        self._clock = clock
        self._config: AccountConfig | None = None
        self._records: dict[int, FlowRecord] = {}  # discovered flows being watched
        self._listed: dict[int, FlowRecord] = {}  # every flow the last run found (or kept): the cap's input
        self._dropped = 0  # of _listed, left out by discovery.max_flows
        self._last_run = DiscoveryRun()  # how the last run went (the flows page shows it)
        self._task: asyncio.Task[None] | None = None
        self._reading = False  # a run is reading the list

    # -- the source's life cycle (exporter.polling.source.Source) -----------------------------
    def endpoints(self, config: AccountConfig) -> tuple[str, ...]:
        return (QUERY_PAGE,) if config.discovery.enabled else ()

    async def apply(self, config: AccountConfig, *, run: bool = True) -> None:
        """Take a (new) config: set the poller's flows and (re)start the refresh task.

        Called at start and on every reload; the flows discovered so far stay while
        discovery stays on. A running task goes on when what it reads by (the
        ``discovery:`` and ``api:`` sections) is unchanged; else it is restarted, and a
        run it cuts short counts as not successful. ``run=False`` starts no task (tests
        call :meth:`run_once`).
        """
        keep = run and self._task is not None and not self._task.done() and _same_source(self._config, config)
        if not keep:
            interrupted = self._reading and self._task is not None
            await self.stop()
            if interrupted and config.discovery.enabled:
                self._failed("interrupted: a reload changed the discovery or api settings")
                log.info("discovery_run_interrupted", reason="reload changed the discovery or api settings")
        self._config = config
        if not config.discovery.enabled:
            self._listed = {}
            self._last_run = DiscoveryRun()
        else:
            self._telemetry.discovery_on()
        self._cap(self._listed)  # flows: or max_flows may have changed
        await self._publish()
        if run and not keep:
            self.start()

    def start(self) -> None:
        """Start the refresh task of the config last applied, if discovery is on and it is not running
        (at start, once the HTTP server is listening, and after a reload that stopped it)."""
        if self._config is not None and self._config.discovery.enabled and self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"discovery {self._config.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _publish(self) -> None:
        assert self._config is not None
        await self._poller.set_discovered(self._records, self._last_run if self._config.discovery.enabled else None)
        if self._config.discovery.enabled:
            self._telemetry.discovered(len(self._records), self._dropped)

    def _cap(self, listed: dict[int, FlowRecord]) -> None:
        """Watch what discovery.max_flows leaves room for among ``listed`` (the rules above)."""
        assert self._config is not None
        self._listed = listed
        static = {flow.key_id for flow in self._config.flows}
        room = max(0, self._config.discovery.max_flows - len(static))
        extra = [record for key_id, record in listed.items() if key_id not in static]
        was = self._dropped
        self._dropped = max(0, len(extra) - room)
        if self._dropped:
            watched = self._records
            extra.sort(key=lambda r: (r.key_id not in watched, r.created is None, -(r.created or 0.0), -r.key_id))
            kept = {r.key_id for r in extra[:room]} | static
            self._records = {key_id: record for key_id, record in listed.items() if key_id in kept}
        else:
            self._records = dict(listed)
        if self._dropped and not was:
            log.warning("discovery_capped", max_flows=self._config.discovery.max_flows, listed=len(listed),
                        left_out=self._dropped)
        elif was and not self._dropped:
            log.info("discovery_cap_lifted", max_flows=self._config.discovery.max_flows, listed=len(listed))

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """A run now, then one every discovery.refresh, until cancelled (a run that crashes keeps the set)."""
        config = self._config
        assert config is not None
        await every(lambda: config.discovery.refresh, self.run_once, log=log, failed="discovery_run_failed")

    async def run_once(self) -> bool:
        """Read the whole list and apply it. False (and nothing changed) if any page failed."""
        config = self._config
        client = self._client()
        if config is None or not config.discovery.enabled or client is None:
            return False
        settings = config.discovery
        zone = config.api.zone
        params = list_params(settings, zone, self._clock())
        self._reading = True
        try:
            found = await self._read_all(client, params, settings.page_size, zone,
                                         time.monotonic() + settings.refresh)
        except (ApiError, NotSent) as exc:
            self._failed(str(exc))
            log.warning("discovery_failed", error=str(exc), keeping=f"{len(self._records)} discovered flows")
            await self._publish()
            return False
        finally:
            self._reading = False
        if not _same_source(self._config, config):  # reloaded while the list was read: the new settings decide
            self._failed("interrupted: a reload changed the discovery or api settings")
            await self._publish()
            return False
        records = dict(found)
        states = {state.key_id: state for state in self._poller.snapshot.flows}  # one index, not a scan per flow
        for key_id, record in self._records.items():
            if key_id in found:
                continue
            if _ended(states.get(key_id), record):
                log.info("discovered_flow_left", key_id=key_id, task_name=record.task_name)
            else:
                records[key_id] = record  # no longer listed but still running: keep watching
        before = set(self._records)
        self._cap(records)
        for key_id in self._records.keys() - before:
            log.info("flow_discovered", key_id=key_id, task_name=records[key_id].task_name)
        finished = self._clock()
        self._last_run = DiscoveryRun(finished, True, len(self._records), self._dropped)
        await self._publish()
        self._telemetry.discovery_succeeded(finished)
        return True

    def _failed(self, why: str) -> None:
        """A run failed: the previous set is kept; the next snapshot says why."""
        self._telemetry.discovery_failed()
        self._last_run = DiscoveryRun(self._clock(), False, len(self._records), self._dropped, why[:MAX_ERROR])

    async def _read_all(
        self, client: PageSource, params: dict[str, str], size: int, zone: tzinfo, deadline: float
    ) -> dict[int, FlowRecord]:
        """Every record of the list, by keyId; re-read while the list changes under us."""
        found: dict[int, FlowRecord] = {}
        for attempt in range(1, MAX_PASSES + 1):
            totals = []
            overfull = False
            current = 1
            while True:
                page = await client.query_page(current, size, params, zone, deadline)
                totals.append(page.total)
                overfull = overfull or page.excess > 0
                for record in page.records:
                    found[record.key_id] = record
                pages = page.pages or math.ceil(page.total / size)
                if current >= min(pages, MAX_PAGES) or not page.records:
                    break
                current += 1
            if overfull or (len(set(totals)) == 1 and len(found) >= totals[-1]):
                break
            log.info("discovery_list_changed_while_read", passes=attempt, totals=totals[:10])
        return found


def _ended(state: FlowState | None, record: FlowRecord) -> bool:
    """Whether a flow the list no longer shows has ended: by its last queryDetail answer (or a
    -24, it does not exist), else by its last record."""
    if state is not None:
        if state.last_error is not None and state.last_error.code == CODE_NOT_EXISTING:
            return True
        if state.detail is not None:
            return state.detail.status in NODE_ENDED_STATUSES
    return record.status in NODE_ENDED_STATUSES
