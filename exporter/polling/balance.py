"""The account balance: ``GET {balance.path}`` every ``balance.interval``, on its own schedule.

Its own task, apart from the poll cycles: a slow or failing balance query never delays a
flow poll, and failing flows (even an account back-off) never stop it. Each query ends by
the next one's start (its deadline is one interval away). After every query the poller
publishes an immutable :class:`BalanceState`; the exposition renders it on each scrape
(a scrape never calls the API). A failed query keeps the last balance until it is older
than ``3 x balance.interval`` (:attr:`BalanceState.stale_after`); then it is not shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog

from ..aio import cancel, every
from ..config import AccountConfig, BalanceConfig
from ..itnio.endpoints import GET_BALANCE
from ..itnio.errors import ApiError, Failure, NotSent
from ..itnio.model import Balance

log = structlog.get_logger("exporter.polling.balance")


class BalanceSource(Protocol):
    async def get_balance(self, path: str = ..., deadline: float | None = None) -> Balance: ...


@dataclass(frozen=True, slots=True)
class BalanceState:
    """What the last balance queries found: published after each one, never changed."""

    account: str = "default"
    enabled: bool = False
    balance: Balance | None = None  # the last successfully decoded answer, kept across failures
    last_success: float | None = None  # unix time
    interval: float = 300.0  # seconds: balance.interval
    stale_after: float = 900.0  # seconds: 3 x balance.interval
    low_threshold: float | None = None  # balance.low_threshold
    last_error: Failure | NotSent | None = field(default=None, compare=False)

    def visible(self, now: float) -> Balance | None:
        """The balance to show at unix time ``now``: None once it is older than :attr:`stale_after`."""
        if self.balance is None or self.last_success is None or now - self.last_success > self.stale_after:
            return None
        return self.balance


Publish = Callable[[BalanceState], None]


class BalancePoller:
    """The balance source of one account: owns the balance task and the state it publishes.

    ``owned=False`` (another shard replica reads this account's balance): it never queries,
    and publishes nothing."""

    def __init__(
        self,
        client: Callable[[], BalanceSource | None],
        publish: Publish,
        *,
        account: str = "default",
        owned: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self._client = client  # the current client (it is replaced when api: changes on reload)
        self._publish = publish
        self._clock = clock
        self._owned = owned
        self._settings = BalanceConfig(enabled=False)
        self.state = BalanceState(account=account)
        self._task: asyncio.Task[None] | None = None

    # -- the source's life cycle (exporter.polling.source.Source) -----------------------------
    def _settings_of(self, config: AccountConfig) -> BalanceConfig:
        return config.balance if self._owned else BalanceConfig(enabled=False)

    def endpoints(self, config: AccountConfig) -> tuple[str, ...]:
        return (GET_BALANCE,) if self._settings_of(config).enabled else ()

    def start(self) -> None:
        if self._task is None and self._settings.enabled:
            self._task = asyncio.create_task(self.run(), name=f"balance {self.state.account}")

    async def apply(self, config: AccountConfig, *, run: bool = True) -> None:
        """Take a (new) config: restart the task if ``balance:`` changed (or it is not running).

        ``run=False`` starts no task (tests call :meth:`poll_once`). Turned off, the balance
        series go at once; the threshold and staleness follow the new settings at once.
        """
        settings = self._settings_of(config)
        if settings == self._settings and (self._task is not None or not run or not settings.enabled):
            return
        await self.stop()
        self._settings = settings
        if settings.enabled:
            self.state = replace(self.state, enabled=True, interval=settings.interval,
                                 stale_after=settings.stale_after_seconds, low_threshold=settings.low_threshold)
        else:
            self.state = BalanceState(account=self.state.account)
        self._publish(self.state)
        if run:
            self.start()

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def run(self) -> None:
        """A query now, then one every balance.interval, until cancelled (a query that crashes keeps
        the last balance)."""
        settings = self._settings  # a change of them restarts this task
        await every(lambda: settings.interval, self.poll_once, log=log, failed="balance_query_crashed")

    async def poll_once(self) -> bool:
        """Query the balance once and publish the outcome. False if it failed (the last balance stays)."""
        settings, client = self._settings, self._client()
        if not settings.enabled or client is None:
            return False
        try:
            balance = await client.get_balance(settings.path, time.monotonic() + settings.interval)
        except (ApiError, NotSent) as exc:
            failure = exc.summary() if isinstance(exc, ApiError) else NotSent(exc.reason)  # kept: no traceback
            if settings is not self._settings:  # reloaded meanwhile: the new settings decide
                return False
            if self.state.last_error is None:
                log.warning("balance_query_failed", path=settings.path, error=str(failure),
                            keeping="the last balance" if self.state.balance is not None else "no balance yet")
            self.state = replace(self.state, last_error=failure)
            self._publish(self.state)
            return False
        if settings is not self._settings:  # reloaded meanwhile: the new settings decide
            return False
        if self.state.last_error is not None:
            log.info("balance_query_recovered")
        self.state = replace(self.state, balance=balance, last_success=self._clock(), last_error=None)
        self._publish(self.state)
        return True
