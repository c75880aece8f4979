"""The immutable result of a poll cycle: what /metrics shows until the next cycle ends.

Besides the flows, a snapshot says how its account stands when it was made (its host, back-off,
clock offset and last discovery run), so that the flows pages read everything from snapshots and
never ask a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..itnio.errors import Failure
from ..itnio.model import Answer, CallStats, FlowDetail, FlowRecord


@dataclass(frozen=True, slots=True)
class FlowState:
    key_id: int
    name: str
    # The last successfully decoded answer, kept across failures until it is stale.
    detail: FlowDetail | None = None
    up: bool = False
    last_success: float | None = None  # unix time
    stale: bool = False  # detail is older than poll.stale_after: its series are not shown
    polls: int = 0
    errors: tuple[tuple[str, int], ...] = ()  # (kind, count) since start, per flow
    last_error: Failure | None = field(default=None, compare=False)  # bounded: no traceback, no body
    failing_since_cycles: int = 0  # consecutive failed polls
    record: FlowRecord | None = None  # what discovery's flow list says of it (None: not listed)
    calls: tuple[tuple[int, CallStats], ...] = ()  # (node key_id, group-call counts), enrich.node_calls
    # The last answer queryDetail gave for this flow, good or bad (the flows page shows it).
    last_answer: Answer | None = field(default=None, compare=False)

    @property
    def visible_detail(self) -> FlowDetail | None:
        return None if self.stale else self.detail


@dataclass(frozen=True, slots=True)
class DiscoveryRun:
    """How the account's last discovery run went (discovery hands it to the poller with its flows)."""

    finished: float | None = None  # unix time the last run ended; None: none has yet
    succeeded: bool = False
    discovered: int = 0  # flows watched because discovery found them
    dropped: int = 0  # found, but left out by discovery.max_flows
    error: str = ""  # why the last run failed (bounded text, no secret)


@dataclass(frozen=True, slots=True)
class Snapshot:
    account: str = "default"  # the account whose flows these are
    flows: tuple[FlowState, ...] = ()
    cycles: int = 0  # completed cycles
    cycle_started: float = 0.0  # unix time
    cycle_duration: float = 0.0  # seconds
    max_nodes_per_flow: int = 200  # nodes beyond this get no per-node series
    host: str = ""  # where the account is read from (host and port of api.base_url)
    backoff: float = 0.0  # seconds between cycles while the account is failing (-1, -2, -13); 0.0: it is not
    backoff_since: float | None = None  # unix time the account started failing
    clock_offset: float = 0.0  # seconds: the vendor's clock minus ours, as the client learnt it
    discovery: DiscoveryRun | None = None  # None: discovery is off

    @property
    def ready(self) -> bool:
        return self.cycles > 0

    def flow(self, key_id: int) -> FlowState | None:
        for state in self.flows:
            if state.key_id == key_id:
                return state
        return None
