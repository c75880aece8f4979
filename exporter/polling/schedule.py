"""When each flow is polled: terminal flows less often, and requests spread over the interval.

A flow whose last good answer says it is completed (2) or cancelled (3) cannot change
any more in the usual course of things, so it is polled every ``poll.terminal_interval``
instead of every ``poll.interval``: with most flows finished, this is most of the vendor
calls saved. A failed poll does not defer the flow: it is tried again next cycle.

Staleness follows the flow's own interval: a flow is stale once its last success is
older than ``poll.stale_after`` *plus* the time it is allowed to go unpolled beyond one
``poll.interval``. A terminal flow skipped for 15 minutes is therefore never stale for
that alone; it goes stale ``stale_after`` after a terminal poll it missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config import PollConfig
from ..itnio.model import TERMINAL_STATUSES, FlowDetail


def is_terminal(detail: FlowDetail | None) -> bool:
    return detail is not None and detail.status in TERMINAL_STATUSES


def own_interval(poll: PollConfig, detail: FlowDetail | None) -> float:
    """How often a flow with this last good answer is polled."""
    return poll.terminal_interval if is_terminal(detail) else poll.interval


def stale_after(poll: PollConfig, detail: FlowDetail | None) -> float:
    """Seconds after its last success at which a flow with this last good answer is stale."""
    return poll.stale_after_seconds + own_interval(poll, detail) - poll.interval


class Schedule:
    """The next due time of every flow that is not due every cycle (clock: the poller's)."""

    def __init__(self) -> None:
        self._next: dict[int, float] = {}

    def due(self, key_ids: Iterable[int], now: float, interval: float) -> set[int]:
        """The flows to poll in a cycle starting at ``now``. Half an interval of slack, so a
        flow due a moment after the cycle starts is not put off by a whole interval."""
        slack = interval / 2
        return {key for key in key_ids if self._next.get(key, now) <= now + slack}

    def update(self, outcomes: Mapping[int, object], started: float, poll: PollConfig) -> None:
        """After a cycle started at ``started``: terminal answers defer their flow."""
        for key, outcome in outcomes.items():
            if isinstance(outcome, FlowDetail) and is_terminal(outcome):
                self._next[key] = started + poll.terminal_interval
            else:
                self._next.pop(key, None)

    def forget(self, keep: Iterable[int]) -> None:
        keep = set(keep)
        for key in [k for k in self._next if k not in keep]:
            del self._next[key]


def spread_offsets(count: int, window: float) -> list[float]:
    """Start offsets for ``count`` requests spread evenly over ``window`` seconds."""
    if count <= 0:
        return []
    step = max(0.0, window) / count
    return [i * step for i in range(count)]
