"""The map of an account's sources: every vendor feature, registered in one place.

Each source (:class:`exporter.polling.source.Source`) gets what it needs from the account's
:class:`Wiring`: the current client (replaced when ``api:`` changes on reload), the account's
telemetry, where to publish, and the shard. The flow poller comes first: the others hand it
what they find (discovered flows, node-call counts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import AccountConfig
from ..itnio.client import ItnioClient
from ..metrics.telemetry import AccountTelemetry
from ..polling.balance import BalancePoller, BalanceState
from ..polling.discovery import Discovery
from ..polling.enrich import NodeCalls
from ..polling.poller import Poller
from ..polling.shard import Shard
from ..polling.snapshot import Snapshot
from ..polling.source import Source


@dataclass(frozen=True)
class Wiring:
    """What an account gives its sources."""

    config: AccountConfig
    client: Callable[[], ItnioClient]  # the account's current client
    telemetry: AccountTelemetry
    publish: Callable[[Snapshot], Awaitable[None]]
    publish_balance: Callable[[BalanceState], None]
    shard: Shard
    before_cycle: Callable[[], Awaitable[None]]


def flow_poller(wiring: Wiring) -> Poller:
    return Poller(
        wiring.config,
        wiring.client(),
        wiring.publish,
        before_cycle=wiring.before_cycle,
        on_backoff=wiring.telemetry.backoff_set,
        shard=wiring.shard,
        clock_offset=lambda: wiring.client().clock_offset,  # of the account's current client
    )


# The sources that hang off the flow poller, in the order they are applied and started.
SOURCES: dict[str, Callable[[Wiring, Poller], Source]] = {
    "node_calls": lambda wiring, poller: NodeCalls(poller, wiring.client),
    "discovery": lambda wiring, poller: Discovery(poller, wiring.client, wiring.telemetry),
    "balance": lambda wiring, poller: BalancePoller(
        wiring.client, wiring.publish_balance, account=wiring.config.name,
        owned=wiring.shard.owns_account(wiring.config.name),
    ),
}


def build_sources(wiring: Wiring) -> tuple[Poller, tuple[Source, ...]]:
    """The account's flow poller, and all its sources (the poller first)."""
    poller = flow_poller(wiring)
    return poller, (poller, *(make(wiring, poller) for make in SOURCES.values()))
