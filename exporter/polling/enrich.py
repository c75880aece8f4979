"""Call outcomes per node: ``GET /voice/group/call/detail/{taskId}`` for each node's task.

Turned on by ``enrich.node_calls``. After the flows of a poll cycle are in, the poller
asks :meth:`NodeCallEnricher.refresh` to fetch the group-call counts of every node it
shows (the first ``poll.max_nodes_per_flow`` nodes of each flow that have a taskId).
The requests share the client's slots and the cycle's deadline with queryDetail, so
a cycle still ends within ``poll.interval``; what is not fetched in time keeps its
previous counts.

Which nodes are asked for:

- pending nodes (status 0) are not: their task has made no call yet;
- in-progress nodes are asked every cycle;
- a node that has ended (completed 2, cancelled 3, execution exception 4: the vendor
  documents no way out of any of them) is asked once more after it was first seen
  ended, so that the last calls of the round are counted, and then never again: its
  counts are cached for as long as the flow shows the node.

A failed request keeps the previous counts of the node (a node that never had an
answer has no series), and is logged when the node starts failing (or fails another
way), not every cycle; an authentication or IP error stops the enrichment requests
of the cycle. Counts leave with their node or flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from ..config import AccountConfig
from ..itnio.endpoints import GROUP_CALL_DETAIL
from ..itnio.errors import AccountGuard, ApiError, NotSent
from ..itnio.model import NODE_ENDED_STATUSES, CallStats, FlowDetail
from .snapshot import Snapshot

log = structlog.get_logger("exporter.polling.enrich")


class CallSource(Protocol):
    async def group_call_detail(
        self, task_id: int, deadline: float | None = None, may_send: Callable[[], str | None] | None = None
    ) -> CallStats: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    task_id: int
    stats: CallStats
    final: bool  # fetched after the node had ended: never fetched again


class NodeCallEnricher:
    def __init__(self, client: Callable[[], CallSource | None]):
        self._client = client  # the current client (it is replaced when api: changes on reload)
        self._cache: dict[int, dict[int, _Entry]] = {}  # flow key_id -> node key_id -> counts
        self._failing: dict[int, tuple[str, str]] = {}  # node key_id -> (kind, code) of its last failure, logged once

    def calls_for(self, key_id: int) -> tuple[tuple[int, CallStats], ...]:
        """(node key_id, counts) of a flow, by node key_id."""
        entries = self._cache.get(key_id, {})
        return tuple(sorted(((node, entry.stats) for node, entry in entries.items()), key=lambda item: item[0]))

    def requests_due(self, key_id: int, detail: FlowDetail, max_nodes: int) -> list[tuple[int, int, bool]]:
        """(node key_id, task_id, ended) of the nodes of a flow to ask for now."""
        entries = self._cache.get(key_id, {})
        due = []
        for node in detail.nodes[:max_nodes]:
            if node.task_id is None or node.status == 0:
                continue
            entry = entries.get(node.key_id)
            if entry is not None and entry.final and entry.task_id == node.task_id:
                continue
            due.append((node.key_id, node.task_id, node.status in NODE_ENDED_STATUSES))
        return due

    async def refresh(self, snapshot: Snapshot, results: Mapping[int, object], deadline: float) -> None:
        """Fetch what is due for the flows of ``snapshot``, with this cycle's ``results`` taken
        in place of the snapshot's details where there are any. Never raises (but cancellation)."""
        try:
            await self._refresh(snapshot, results, deadline)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not an answer: the poll cycle goes on without enrichment
            log.exception("enrichment_failed")

    async def _refresh(self, snapshot: Snapshot, results: Mapping[int, object], deadline: float) -> None:
        max_nodes = snapshot.max_nodes_per_flow
        details: dict[int, FlowDetail] = {}
        for state in snapshot.flows:
            result = results.get(state.key_id)
            # A stale detail shows no nodes: neither are their calls asked for (nor kept).
            detail = result if isinstance(result, FlowDetail) else state.visible_detail
            if detail is not None:
                details[state.key_id] = detail
        # Forget flows and nodes that are gone, and nodes beyond the cap or with a new task.
        cache: dict[int, dict[int, _Entry]] = {}
        for key_id, detail in details.items():
            old = self._cache.get(key_id, {})
            kept = {
                node.key_id: old[node.key_id]
                for node in detail.nodes[:max_nodes]
                if node.key_id in old and old[node.key_id].task_id == node.task_id
            }
            cache[key_id] = kept
        self._cache = cache
        shown = {node.key_id for detail in details.values() for node in detail.nodes[:max_nodes]}
        self._failing = {node: failure for node, failure in self._failing.items() if node in shown}
        client = self._client()
        if client is None:
            return
        guard = AccountGuard()

        async def one(entries: dict[int, _Entry], key_id: int, node_key: int, task_id: int, ended: bool) -> None:
            try:
                stats = await client.group_call_detail(task_id, deadline, guard.may_send)
            except NotSent:
                return
            except ApiError as error:
                guard.note(error)
                failure = (error.kind.value, error.code)
                if self._failing.get(node_key) != failure:  # a new failure of this node, not a repetition
                    log.warning(
                        "node_calls_failed", key_id=key_id, node_key_id=node_key, task_id=task_id,
                        kind=error.kind.value, code=error.code, error=error.message,
                    )
                self._failing[node_key] = failure
                return
            if self._failing.pop(node_key, None) is not None:
                log.info("node_calls_recovered", key_id=key_id, node_key_id=node_key, task_id=task_id)
            entries[node_key] = _Entry(task_id, stats, final=ended)

        jobs = [
            one(cache[key_id], key_id, node_key, task_id, ended)
            for key_id, detail in details.items()
            for node_key, task_id, ended in self.requests_due(key_id, detail, max_nodes)
        ]
        await asyncio.gather(*jobs)


class UsesEnricher(Protocol):
    """What runs the enricher after each cycle (the account's poller)."""

    @property
    def enricher(self) -> NodeCallEnricher | None: ...

    def use_enricher(self, enricher: NodeCallEnricher | None) -> None: ...


class NodeCalls:
    """The node-calls source of one account: hands the poller an enricher while
    ``enrich.node_calls`` is on (its cache survives a reload), none while it is off. Its
    requests run inside the poll cycle, so it has no task of its own."""

    def __init__(self, poller: UsesEnricher, client: Callable[[], CallSource | None]):
        self._poller = poller
        self._client = client

    def endpoints(self, config: AccountConfig) -> tuple[str, ...]:
        return (GROUP_CALL_DETAIL,) if config.enrich.node_calls else ()

    async def apply(self, config: AccountConfig, *, run: bool = True) -> None:
        if not config.enrich.node_calls:
            self._poller.use_enricher(None)
        elif self._poller.enricher is None:
            self._poller.use_enricher(NodeCallEnricher(self._client))

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
