"""The flows the simulator serves: static ones a test sets directly, and scripted ones that move with time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimNode:
    key_id: int
    task_id: int | None
    script_id: int | None
    status: int

    def as_json(self) -> dict[str, Any]:
        return {"keyId": self.key_id, "taskId": self.task_id, "nodeStatus": self.status, "scriptId": self.script_id}


@dataclass
class SimFlow:
    """A flow whose state the test (or the CLI) sets directly."""

    key_id: int
    status: int = 1
    recall_interval: int = 5
    recall_num: int = 3
    recall_type: int = 1
    nodes: list[SimNode] = field(default_factory=list)
    # What recallFlow/queryPage lists; created=None means "when the simulator started".
    task_id: int | None = None
    task_name: str | None = None
    created: float | None = None  # unix time
    finish_num: int = 0

    def data(self, elapsed: float) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "recallInterval": self.recall_interval,
            "recallNum": self.recall_num,
            "recallType": self.recall_type,
            "status": self.status,
            "nodeList": [node.as_json() for node in self.nodes],
            # The vendor's example carries a paging wrapper here too.
            "total": len(self.nodes),
            "size": 1,
            "current": 1,
            "searchCount": True,
            "pages": 1,
        }


@dataclass
class ScriptedFlow:
    """A flow that moves through its states with time, round by round, and starts over.

    It waits ``start_delay`` seconds (pending), then runs ``rounds`` nodes of
    ``round_seconds`` each; ``outcome`` is ``completed``, or ``cancelled`` /
    ``exception`` at round ``fail_round``. Every ``period`` seconds it starts over with
    new node ids, so nodes also disappear. ``offset`` shifts where it is at t=0.
    """

    key_id: int
    rounds: int = 4
    round_seconds: float = 6.0
    start_delay: float = 4.0
    outcome: str = "completed"
    fail_round: int = 1
    period: float = 60.0
    offset: float = 0.0
    recall_type: int = 1
    recall_interval: int = 1

    def data(self, elapsed: float) -> dict[str, Any]:
        position = elapsed + self.offset
        loop, t = divmod(position, self.period)
        current = int((t - self.start_delay) // self.round_seconds) if t >= self.start_delay else -1
        statuses = []
        flow_status = 0 if current < 0 else 1
        for index in range(self.rounds):
            if self.outcome != "completed" and current >= self.fail_round:
                if index < self.fail_round:
                    statuses.append(2)
                elif index == self.fail_round:
                    statuses.append(3 if self.outcome == "cancelled" else 4)
                else:
                    statuses.append(3)
                flow_status = 3 if self.outcome == "cancelled" else 4
            elif index < current:
                statuses.append(2)
            elif index == current:
                statuses.append(1)
            else:
                statuses.append(0)
        if self.outcome == "completed" and current >= self.rounds:
            flow_status = 2
        base = self.key_id * 10000 + int(loop % 100) * 10
        return {
            "keyId": self.key_id,
            "recallInterval": self.recall_interval,
            "recallNum": self.rounds,
            "recallType": self.recall_type,
            "status": flow_status,
            "nodeList": [
                {"keyId": base + i, "taskId": 5000000 + base + i, "nodeStatus": s, "scriptId": 100 + self.key_id % 7}
                for i, s in enumerate(statuses)
            ],
        }


def demo_flows() -> list[tuple[ScriptedFlow, str]]:
    """The demo's flows, staggered so that every state is on show from the first poll."""
    return [
        (ScriptedFlow(1001, rounds=4, start_delay=4, period=60), "collections-eu"),
        (ScriptedFlow(1002, rounds=5, start_delay=4, period=75, offset=20), "renewals-us"),
        (ScriptedFlow(1003, rounds=4, start_delay=2, outcome="cancelled", fail_round=2, period=90, offset=30),
         "winback-apac"),
        (ScriptedFlow(1004, rounds=3, start_delay=2, outcome="exception", fail_round=1, period=90, offset=40),
         "surveys-latam"),
        (ScriptedFlow(1005, rounds=3, start_delay=20, period=70), "reminders-uk"),
        (ScriptedFlow(1006, rounds=3, start_delay=0, period=120, offset=100), "payments-mx"),
    ]


def static_flows(count: int, nodes: int, first_key: int = 1) -> list[SimFlow]:
    """``count`` flows with ``nodes`` nodes each, in a spread of states."""
    flows = []
    for i in range(count):
        key = first_key + i
        flows.append(
            SimFlow(
                key_id=key,
                status=i % 5,
                recall_num=nodes,
                nodes=[SimNode(key * 1000 + j, 7000000 + key * 1000 + j, 100 + j % 3, (i + j) % 5) for j in range(nodes)],
            )
        )
    return flows
