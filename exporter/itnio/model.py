"""What the API tells us, as immutable values: flows, nodes, list records, call counts.

Flow ``status`` and ``nodeStatus`` share one scale (:data:`STATES`); anything outside
it is ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The flow and node state scale the vendor documents (shared by flows and nodes).
STATES: tuple[str, ...] = ("pending", "in_progress", "completed", "cancelled", "exception")
UNKNOWN_STATE = "unknown"
ALL_STATES: tuple[str, ...] = (*STATES, UNKNOWN_STATE)
TERMINAL_STATUSES = frozenset({2, 3})
RECALL_TYPES = {0: "all", 1: "failed"}


def state_name(status: int) -> str:
    return STATES[status] if 0 <= status < len(STATES) else UNKNOWN_STATE


MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body kept for the flows page and --api.check


@dataclass(frozen=True, slots=True)
class Drift:
    """One way an answer deviated from the documented types but was still used."""

    field: str  # a documented field path without list indices (data.nodeList.nodeStatus), or "other"
    kind: str  # string_number, missing, unreadable, unreadable_node, too_long, excess_records (decoding)
    detail: str  # what exactly, for the log: "data.nodeList[3].keyId is not a whole number"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope of an answer and the form it came in."""

    code: int
    message: str
    form: str  # "code/msg" or "status/reason"
    code_type: str  # "number" or "string"


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as it was received and read: shown by the flows page and --api.check."""

    received: float  # unix time
    http_status: int
    body: bytes  # the first MAX_ANSWER_BYTES of the body
    size: int  # bytes in the whole body
    envelope: Envelope | None = None  # None: not JSON, or no envelope could be read
    drift: tuple[Drift, ...] = ()
    date: str | None = None  # the Date header as sent (parsed only where it is needed)


@dataclass(frozen=True, slots=True)
class NodeDetail:
    key_id: int
    task_id: int | None
    script_id: int | None
    status: int


@dataclass(frozen=True, slots=True)
class FlowDetail:
    status: int
    recall_interval_minutes: int | None  # None: absent or unreadable in the answer (drift)
    recall_num: int | None
    recall_type: int | None
    nodes: tuple[NodeDetail, ...]
    answer: Answer | None = field(default=None, compare=False, repr=False)  # set by the client

    @property
    def recall_type_name(self) -> str:
        return UNKNOWN_STATE if self.recall_type is None else RECALL_TYPES.get(self.recall_type, UNKNOWN_STATE)


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
    excess: int = 0  # records beyond the size asked for, left out (excess_records drift)
    answer: Answer | None = field(default=None, compare=False, repr=False)  # set by the client


@dataclass(frozen=True, slots=True)
class CallStats:
    """group/call/detail of one node's task; None where the answer leaves a field out."""

    numbers: float | None  # numCnt: phone numbers in the task
    calls: float | None  # callTotal: calls made
    succeeded: float | None  # success: calls answered
    failed: float | None  # fail: calls not answered
    acd_seconds: float | None  # acd: average call duration, seconds
    answer: Answer | None = field(default=None, compare=False, repr=False)  # set by the client


# The kinds of balance getBalance reports, as (label value of itnio_account_balance, field of the answer).
BALANCE_KINDS: tuple[tuple[str, str], ...] = (("actual", "balance"), ("gift", "gift"), ("credit", "credit"))


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's balance (getBalance), in the account's quote currency (the answer does not say
    which). ``amounts`` are (kind, value) for each of :data:`BALANCE_KINDS` the answer gave."""

    amounts: tuple[tuple[str, float], ...]
    answer: Answer | None = field(default=None, compare=False, repr=False)  # set by the client

    def amount(self, kind: str) -> float | None:
        return dict(self.amounts).get(kind)

    @property
    def available(self) -> float:
        """What can be spent: actual + gift + credit (the kinds the answer gave)."""
        return sum(value for _, value in self.amounts)
