"""What the API tells us, as immutable values: flows, nodes, list records, call counts.

Flow ``status`` and ``nodeStatus`` share one scale (:data:`STATES`); anything outside
it is ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass

# The flow and node state scale the vendor documents (shared by flows and nodes).
STATES: tuple[str, ...] = ("pending", "in_progress", "completed", "cancelled", "exception")
UNKNOWN_STATE = "unknown"
TERMINAL_STATUSES = frozenset({2, 3})
RECALL_TYPES = {0: "all", 1: "failed"}


def state_name(status: int) -> str:
    return STATES[status] if 0 <= status < len(STATES) else UNKNOWN_STATE


@dataclass(frozen=True, slots=True)
class NodeDetail:
    key_id: int
    task_id: int | None
    script_id: int | None
    status: int


@dataclass(frozen=True, slots=True)
class FlowDetail:
    status: int
    recall_interval_minutes: int
    recall_num: int
    recall_type: int
    nodes: tuple[NodeDetail, ...]

    @property
    def recall_type_name(self) -> str:
        return RECALL_TYPES.get(self.recall_type, UNKNOWN_STATE)



VENDOR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# States after which a node's group-call task makes no more calls: completed, cancelled, exception.
NODE_ENDED_STATUSES = frozenset({2, 3, 4})


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One record of a recallFlow/queryPage answer: what the list knows of a flow."""

    key_id: int
    task_id: int | None
    task_name: str
    created: float | None  # unix time of createTime, read in api.timezone
    status: int | None
    finish_num: int | None  # recall attempts done (finishNum): only the list reports it


@dataclass(frozen=True, slots=True)
class FlowPage:
    current: int
    pages: int
    total: int
    records: tuple[FlowRecord, ...]


@dataclass(frozen=True, slots=True)
class CallStats:
    """group/call/detail of one node's task; None where the answer leaves a field out."""

    numbers: float | None  # numCnt: phone numbers in the task
    calls: float | None  # callTotal: calls made
    succeeded: float | None  # success: calls answered
    failed: float | None  # fail: calls not answered
    acd_seconds: float | None  # acd: average call duration, seconds
