"""The poll loop: every interval, query every flow and publish an immutable Snapshot.

All flows of a cycle are queried concurrently, at most ``api.max_concurrency``
requests in flight at once (the client's slots: a retry queues again behind the
others), and every request and retry ends by the cycle's deadline (its start plus
``poll.interval``), so a cycle always ends within the interval and a slow or failing
flow never delays the others beyond ``api.timeout``. Nothing the API answers can end
the loop.

Authentication (-1), IP (-2) and user-locked (-13) errors mean the account, not the flow, is broken:
the cycle stops sending, the next cycles come after an exponential back-off (up to
``poll.max_backoff``) and start with a single probe; the first success restores the
normal pace.

The poller is the account's flow-polling source: it watches the account's ``flows:`` and
the flows discovery gives it (:meth:`Poller.set_discovered`; a configured flow keeps its
name, a discovered one is named after its taskName). The set can change while the loop
runs (:meth:`Poller.apply`, :meth:`Poller.set_discovered`): flows that stay keep their
data, removed flows leave the snapshot at once and added flows are polled at once.
Results are always merged into the *current* snapshot, so a cycle that
was running during the change cannot bring a removed flow back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import structlog

from ..aio import cancel, every
from ..config import AccountConfig, FlowConfig
from ..itnio.endpoints import QUERY_DETAIL
from ..itnio.errors import AccountGuard, ApiError, ErrorKind, Failure, NotSent
from ..itnio.model import FlowDetail, FlowRecord
from .schedule import Schedule, spread_offsets
from .schedule import stale_after as flow_stale_after
from .shard import Shard
from .snapshot import DiscoveryRun, FlowState, Snapshot

if TYPE_CHECKING:
    from .enrich import NodeCallEnricher

log = structlog.get_logger("exporter.polling.poller")

Result = FlowDetail | Failure | NotSent  # a failed request is kept as its bounded summary, never the ApiError


class FlowSource(Protocol):
    async def query_detail(
        self, key_id: int, deadline: float | None = None, may_send: Callable[[], str | None] | None = None
    ) -> FlowDetail: ...


Publisher = Callable[[Snapshot], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


class Poller:
    """The flow-polling source of one account (see the module's docstring)."""

    def __init__(
        self,
        config: AccountConfig,
        client: FlowSource,
        publish: Publisher,
        *,
        clock: Callable[[], float] = time.time,
        before_cycle: Hook | None = None,
        on_backoff: Callable[[float], None] | None = None,
        shard: Shard | None = None,
        clock_offset: Callable[[], float] = lambda: 0.0,
    ):
        self._config = config
        self._client = client
        self.publish = publish
        self._clock = clock
        self._before_cycle = before_cycle
        self._on_backoff = on_backoff or (lambda seconds: None)
        self._shard = shard or Shard()  # only this shard's flows are polled (exporter.polling.shard)
        self._clock_offset = clock_offset  # the client's learnt offset, read into each snapshot
        self._account = config.name
        # Given by discovery (set_discovered): the discovered flows' list records, by keyId.
        self._records: Mapping[int, FlowRecord] = {}
        self._discovery: DiscoveryRun | None = None  # how its last run went (None: discovery is off)
        self._flows: tuple[FlowConfig, ...] = self._watched(config)
        self._schedule = Schedule()  # terminal flows: every poll.terminal_interval (exporter.polling.schedule)
        self._snapshot = Snapshot(
            account=self._account,
            flows=tuple(FlowState(f.key_id, f.name) for f in self._flows),
            max_nodes_per_flow=config.poll.max_nodes_per_flow,
        )
        self._backoff = 0.0  # seconds; > 0 while the account is failing
        self._backoff_since: float | None = None  # unix time it started failing
        self._last_progress = time.monotonic()  # for /healthz: moves on every answer and cycle
        self._extra: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        # Given by the node-calls source (use_enricher); read after each cycle.
        self._enricher: NodeCallEnricher | None = None

    # -- what others read ------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The last snapshot published."""
        return self._snapshot

    @property
    def backoff(self) -> float:
        """Seconds between cycles while the account is failing (-1, -2, -13); 0.0 when it is not."""
        return self._backoff

    @property
    def last_progress(self) -> float:
        """time.monotonic() of the last answer or cycle (for /healthz)."""
        return self._last_progress

    @property
    def schedule(self) -> Schedule:
        """When the flows that are not due every cycle (terminal ones) are next polled."""
        return self._schedule

    @property
    def enricher(self) -> NodeCallEnricher | None:
        """What fetches per-node call outcomes (None: enrich.node_calls is off)."""
        return self._enricher

    @property
    def flows(self) -> Sequence[FlowConfig]:
        return self._flows

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the source's life cycle (exporter.polling.source.Source) -----------------------------
    def endpoints(self, config: AccountConfig) -> tuple[str, ...]:
        return (QUERY_DETAIL,)

    async def apply(self, config: AccountConfig, *, run: bool = True) -> None:
        """Take a (new) account config: its settings, and its flows (with the discovered ones)."""
        await self._set_flows(config)

    def start(self) -> None:
        """Start the poll loop (once the HTTP server is listening)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"poller {self._account}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        for task in list(self._extra):
            task.cancel()

    # -- wiring: what the owner of the poller gives it ---------------------------------------
    def use_client(self, client: FlowSource) -> None:
        """Send the next requests through ``client`` (the service replaces its client when
        ``api:`` changes on reload); requests in flight finish on the old one."""
        self._client = client

    async def set_discovered(self, records: Mapping[int, FlowRecord], run: DiscoveryRun | None = None) -> None:
        """Watch the discovered flows of these list records (by keyId) besides ``flows:``; their
        records are shown with their flows, and ``run`` (how the last run went; None: discovery
        is off) in the snapshot (discovery calls this after each run)."""
        self._records = dict(records)
        self._discovery = run
        await self._set_flows(self._config)

    def _watched(self, config: AccountConfig) -> tuple[FlowConfig, ...]:
        """The configured flows, then the discovered ones, that this shard polls."""
        static = {flow.key_id for flow in config.flows}
        extra = [
            FlowConfig.model_construct(key_id=key_id, name=self._records[key_id].task_name)
            for key_id in sorted(self._records)
            if key_id not in static
        ]
        return tuple(self._shard.select([*config.flows, *extra], self._account))

    def use_enricher(self, enricher: NodeCallEnricher | None) -> None:
        """Fetch per-node call outcomes after each cycle with ``enricher`` (None: no more);
        from the next cycle on."""
        self._enricher = enricher

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll forever at a fixed rate (or the back-off); a cycle never outlasts the interval."""

        async def cycle() -> None:
            try:
                await self.run_cycle()
            finally:
                self._last_progress = time.monotonic()

        try:
            await every(lambda: self._backoff or self._config.poll.interval, cycle,
                        log=log, failed="poll_cycle_failed", fixed_rate=True)
        finally:
            for task in list(self._extra):
                task.cancel()

    async def run_cycle(self) -> Snapshot:
        started_wall, started = self._clock(), time.monotonic()
        self._last_progress = started
        if self._before_cycle is not None:
            try:
                await self._before_cycle()
            except Exception:
                log.exception("before_cycle_failed")
        deadline = started + self._config.poll.interval
        due = self._schedule.due((flow.key_id for flow in self._flows), started_wall, self._config.poll.interval)
        flows = [flow for flow in self._flows if flow.key_id in due]
        results = await self._poll(flows, deadline, spread=self._config.poll.spread)
        self._adjust_backoff(results.values())
        self._schedule.update(results, started_wall, self._config.poll)
        if self._enricher is not None and not self._backoff:
            await self._enricher.refresh(self._snapshot, results, deadline)
        return await self._merge(results, cycle=(started_wall, time.monotonic() - started))

    async def _poll(self, flows: list[FlowConfig], deadline: float, spread: bool = False) -> dict[int, Result]:
        """Query ``flows``; after an account error, send nothing more this cycle.

        ``spread``: start the requests evenly over the time to the deadline less one
        api.timeout, instead of all at once."""
        results: dict[int, Result] = {}
        if self._backoff and flows:
            # The account was failing: one probe first, the rest only if it passes.
            probe = flows[0]
            results[probe.key_id] = await self._query(probe.key_id, deadline)
            flows = flows[1:]
            failed = results[probe.key_id]
            if isinstance(failed, Failure) and failed.is_account_error():
                for flow in flows:
                    results[flow.key_id] = NotSent(f"account error {failed.code}: waiting for the back-off")
                return results
        guard = AccountGuard()

        async def one(key_id: int, offset: float = 0.0) -> None:
            if offset > 0:
                await asyncio.sleep(offset)
            result = await self._query(key_id, deadline, guard.may_send)
            guard.note(result)
            results[key_id] = result

        window = deadline - time.monotonic() - self._config.api.timeout
        offsets = spread_offsets(len(flows), window) if spread else [0.0] * len(flows)
        await asyncio.gather(*(one(flow.key_id, offset) for flow, offset in zip(flows, offsets, strict=True)))
        return results

    async def _query(
        self, key_id: int, deadline: float, may_send: Callable[[], str | None] | None = None
    ) -> Result:
        try:
            return await self._client.query_detail(key_id, deadline, may_send)
        except ApiError as error:
            return error.summary()  # the error, its traceback and the body its frames hold go now
        except NotSent as outcome:
            return NotSent(outcome.reason)  # never raised: no traceback
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the daemon never dies of what it reads
            log.exception("query_failed_unexpectedly", key_id=key_id)
            return Failure(ErrorKind.DECODE, "", type(exc).__name__)
        finally:
            self._last_progress = time.monotonic()

    def _adjust_backoff(self, results: Iterable[Result]) -> None:
        results = list(results)
        account = next((r for r in results if isinstance(r, Failure) and r.is_account_error()), None)
        succeeded = any(isinstance(r, FlowDetail) for r in results)
        if account is not None and not succeeded:
            poll = self._config.poll
            self._backoff = min(poll.max_backoff, max(2 * poll.interval, 2 * self._backoff))
            if self._backoff_since is None:
                self._backoff_since = self._clock()
            log.warning("account_backoff", code=account.code, error=account.message, backoff_seconds=self._backoff)
        elif succeeded and self._backoff:
            log.info("account_recovered", previous_backoff_seconds=self._backoff)
            self._backoff = 0.0
            self._backoff_since = None
        self._on_backoff(self._backoff)

    # -- changing the set of flows ---------------------------------------------------------
    async def _set_flows(self, config: AccountConfig) -> None:
        """Apply a config's flows and settings (with the discovered flows); poll added flows at once."""
        old = {flow.key_id for flow in self._flows}
        self._config = config
        self._flows = self._watched(config)
        self._schedule.forget(keep=(flow.key_id for flow in self._flows))
        added = [flow for flow in self._flows if flow.key_id not in old]
        await self._merge({}, cycle=None)  # removed flows leave /metrics now
        if added:
            task = asyncio.create_task(self._poll_added(added))
            self._extra.add(task)
            task.add_done_callback(self._extra.discard)

    async def _poll_added(self, flows: list[FlowConfig]) -> None:
        started = self._clock()
        results = await self._poll(flows, time.monotonic() + self._config.poll.interval)
        self._schedule.update(results, started, self._config.poll)
        await self._merge(results, cycle=None)

    # -- building snapshots ----------------------------------------------------------------
    async def _merge(self, results: dict[int, Result], cycle: tuple[float, float] | None) -> Snapshot:
        """A new snapshot: the current flows, their last states, updated with ``results``."""
        now = self._clock()
        previous = {state.key_id: state for state in self._snapshot.flows}
        states = []
        for flow in self._flows:
            state = previous.get(flow.key_id) or FlowState(flow.key_id, flow.name)
            if state.name != flow.name:
                state = replace(state, name=flow.name)
            if flow.key_id in results:
                stale_after = flow_stale_after(self._config.poll, state.detail)  # the flow's own interval
                state = _next_state(state, results[flow.key_id], now, stale_after)
            record = self._records.get(flow.key_id)
            calls = self._enricher.calls_for(flow.key_id) if self._enricher is not None else ()
            if state.record != record or state.calls != calls:
                state = replace(state, record=record, calls=calls)
            states.append(state)
        current = self._snapshot
        snapshot = Snapshot(
            account=self._account,
            flows=tuple(states),
            cycles=current.cycles + (1 if cycle else 0),
            cycle_started=cycle[0] if cycle else current.cycle_started,
            cycle_duration=cycle[1] if cycle else current.cycle_duration,
            max_nodes_per_flow=self._config.poll.max_nodes_per_flow,
            host=self._config.api.host,
            backoff=self._backoff,
            backoff_since=self._backoff_since,
            clock_offset=self._clock_offset(),
            discovery=self._discovery,
        )
        self._snapshot = snapshot
        await self.publish(snapshot)
        return snapshot


def _next_state(old: FlowState, result: Result, now: float, stale_after: float) -> FlowState:
    """The state of a flow after one poll outcome (logging transitions, not repetitions)."""
    stale = old.last_success is None or now - old.last_success > stale_after
    if isinstance(result, NotSent):
        return replace(old, up=False, stale=stale)
    old = replace(old, polls=old.polls + 1, last_answer=result.answer or old.last_answer)
    if isinstance(result, FlowDetail):
        if old.failing_since_cycles:
            log.info("flow_recovered", key_id=old.key_id, failed_polls=old.failing_since_cycles)
        # The answer is kept once, as last_answer: a detail kept across failures would hold a second one.
        return replace(
            old, detail=replace(result, answer=None), up=True, last_success=now, stale=False, last_error=None,
            failing_since_cycles=0,
        )
    errors = dict(old.errors)
    errors[result.kind.value] = errors.get(result.kind.value, 0) + 1
    same_failure = (
        old.last_error is not None and old.last_error.kind == result.kind and old.last_error.code == result.code
    )
    if not same_failure:
        log.warning(
            "flow_poll_failed",
            key_id=old.key_id,
            kind=result.kind.value,
            code=result.code,
            error=result.message,
            failed_polls=old.failing_since_cycles + 1,
        )
    return replace(
        old,
        up=False,
        stale=stale,
        errors=tuple(sorted(errors.items())),
        last_error=result,
        failing_since_cycles=old.failing_since_cycles + 1,
    )
