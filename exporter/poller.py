"""The poll loop: every interval, query every flow and publish an immutable Snapshot.

All flows of a cycle are queried concurrently, at most ``api.max_concurrency`` at
once; each request is bounded by ``api.timeout``, so a slow or failing flow never
delays the others beyond it. Nothing the API answers can end the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

import structlog

from .config import Config, FlowConfig
from .model import ApiError, ErrorKind, FlowDetail
from .snapshot import FlowState, Snapshot

log = structlog.get_logger("exporter.poller")


class FlowSource(Protocol):
    async def query_detail(self, key_id: int) -> FlowDetail: ...


Publisher = Callable[[Snapshot], Awaitable[None]]


class Poller:
    def __init__(
        self,
        config: Config,
        client: FlowSource,
        publish: Publisher,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.client = client
        self.publish = publish
        self.clock = clock
        self.snapshot = Snapshot(flows=tuple(FlowState(f.key_id, f.name) for f in config.flows))
        self.last_progress = time.monotonic()  # for /healthz: moves on every answer and cycle

    @property
    def flows(self) -> Sequence[FlowConfig]:
        return self.config.flows

    async def run(self) -> None:
        """Poll forever at a fixed rate; a cycle longer than the interval starts the next at once."""
        interval = self.config.poll.interval
        while True:
            started = time.monotonic()
            try:
                await self.run_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not an answer: keep polling, loudly
                log.exception("poll_cycle_failed")
            self.last_progress = time.monotonic()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def run_cycle(self) -> Snapshot:
        started_wall, started = self.clock(), time.monotonic()
        self.last_progress = started
        semaphore = asyncio.Semaphore(self.config.api.max_concurrency)
        previous = {state.key_id: state for state in self.snapshot.flows}
        results = await asyncio.gather(*(self._query(flow.key_id, semaphore) for flow in self.flows))
        now = self.clock()
        stale_after = self.config.poll.stale_after_seconds
        states = tuple(
            self._next_state(previous.get(flow.key_id), flow, result, now, stale_after)
            for flow, result in zip(self.flows, results)
        )
        snapshot = Snapshot(
            flows=states,
            cycles=self.snapshot.cycles + 1,
            cycle_started=started_wall,
            cycle_duration=time.monotonic() - started,
        )
        self.snapshot = snapshot
        await self.publish(snapshot)
        return snapshot

    async def _query(self, key_id: int, semaphore: asyncio.Semaphore) -> FlowDetail | ApiError:
        async with semaphore:
            try:
                return await self.client.query_detail(key_id)
            except ApiError as error:
                return error
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the daemon never dies of what it reads
                log.exception("query_failed_unexpectedly", key_id=key_id)
                return ApiError(ErrorKind.DECODE, "", type(exc).__name__)
            finally:
                self.last_progress = time.monotonic()

    @staticmethod
    def _next_state(
        old: FlowState | None,
        flow: FlowConfig,
        result: FlowDetail | ApiError,
        now: float,
        stale_after: float,
    ) -> FlowState:
        old = old or FlowState(flow.key_id, flow.name)
        old = replace(old, name=flow.name, polls=old.polls + 1)
        if isinstance(result, FlowDetail):
            if old.failing_since_cycles:
                log.info(
                    "flow_recovered",
                    key_id=flow.key_id,
                    failed_polls=old.failing_since_cycles,
                )
            return replace(
                old,
                detail=result,
                up=True,
                last_success=now,
                stale=False,
                last_error=None,
                failing_since_cycles=0,
            )
        errors = dict(old.errors)
        errors[result.kind.value] = errors.get(result.kind.value, 0) + 1
        same_failure = (
            old.last_error is not None
            and old.last_error.kind == result.kind
            and old.last_error.code == result.code
        )
        if not same_failure:
            log.warning(
                "flow_poll_failed",
                key_id=flow.key_id,
                kind=result.kind.value,
                code=result.code,
                error=result.message,
                failed_polls=old.failing_since_cycles + 1,
            )
        stale = old.last_success is None or now - old.last_success > stale_after
        return replace(
            old,
            up=False,
            stale=stale,
            errors=tuple(sorted(errors.items())),
            last_error=result,
            failing_since_cycles=old.failing_since_cycles + 1,
        )
