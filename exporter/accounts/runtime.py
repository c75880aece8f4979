"""One account's runtime: its client and its sources, started, reloaded and stopped as one.

Isolation is the rule: each account has its own client (token bucket, learnt clock offset,
throttle pause, connection pool), its own poller and back-off, its own discovery, node calls,
balance and credential files. Nothing one account meets (-1, time-outs, throttling) slows,
stops or marks down another: they share only the event loop, the exposition and the telemetry
registry, and every series they report carries their ``account`` label.

Everything an account does runs in a context that binds ``account`` for structlog, so every
log line about an account names it, including those of the tasks its sources start.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TypeVar

import structlog

from ..aio import cancel
from ..config import (
    AccountConfig,
    ApiConfig,
    Config,
    ConfigError,
    CredentialFiles,
    Credentials,
    load_config,
    resolve_credentials,
)
from ..itnio.client import ItnioClient, RequestObserver
from ..itnio.transport import client_transport_options
from ..metrics.exposition import Exposition
from ..metrics.telemetry import Telemetry
from ..polling.shard import Shard
from .sources import Wiring, build_sources

log = structlog.get_logger("exporter.accounts.runtime")

T = TypeVar("T")
S = TypeVar("S")


def build_client(
    api: ApiConfig, credentials: Credentials, telemetry: RequestObserver, *, single_requests: bool = False
) -> ItnioClient:
    """The API client for an ``api:`` section, reporting into ``telemetry``. ``single_requests``:
    one request per call, no retries and no clock correction after -16 (for --api.check, which
    reports what it sees)."""
    return ItnioClient(
        api.base_url,
        credentials,
        timeout=api.timeout,
        max_connections=api.max_concurrency,
        max_response_bytes=api.max_response_bytes,
        retries=0 if single_requests else api.retries,
        correct_clock=not single_requests,
        max_requests_per_second=api.max_requests_per_second,
        telemetry=telemetry,
        **client_transport_options(api),
    )


def resolve_account_credentials(config: Config) -> dict[str, Credentials]:
    """The key and secret of every account, by name. ``$ITNIO_API_KEY``/``$ITNIO_API_SECRET`` apply
    to the single-account form only. ConfigError names each problem's field
    (``accounts[1].api.api_secret_file: ...``); two accounts with one key at one base_url are one."""
    if config.single_account:
        return {config.name: resolve_credentials(config.api)}
    problems: list[str] = []
    found: dict[str, Credentials] = {}
    keys: dict[tuple[str, str], int] = {}
    for index, account in enumerate(config.accounts_resolved):
        prefix = f"accounts[{index}]."
        try:
            credentials = resolve_credentials(account.api, environ={})
        except ConfigError as exc:
            problems.extend(prefix + problem for problem in exc.problems)
            continue
        same = keys.setdefault((account.api.base_url, credentials.api_key), index)
        if same != index:
            problems.append(f"{prefix}api: the same API key and base_url as accounts[{same}] (one account, twice)")
        found[account.name] = credentials
    if problems:
        raise ConfigError(problems)
    return found


def load_all(path: str | Path) -> tuple[Config, dict[str, Credentials]]:
    """Read and check a config file and the credentials it names (blocking: run it off the loop)."""
    config = load_config(path)
    return config, resolve_account_credentials(config)


class AccountRuntime:
    """One account: its client and its sources (see the module's docstring)."""

    def __init__(
        self,
        config: AccountConfig,
        credentials: Credentials,
        *,
        telemetry: Telemetry,
        exposition: Exposition,
        shard: Shard,
    ):
        self.name = config.name
        self.config = config
        self.credentials = credentials
        self._exposition = exposition
        self.telemetry = telemetry.account(config.name)
        self.client: ItnioClient = build_client(config.api, credentials, self.telemetry)
        self._credential_files = CredentialFiles(config.api)
        self._context = contextvars.copy_context()
        self._context.run(structlog.contextvars.bind_contextvars, account=config.name)
        wiring = Wiring(
            config=config,
            client=lambda: self.client,
            telemetry=self.telemetry,
            publish=exposition.publish,
            publish_balance=exposition.publish_balance,
            shard=shard,
            before_cycle=self._check_credential_files,
        )
        self.poller, self.sources = build_sources(wiring)
        self._closing: set[asyncio.Task[None]] = set()
        self._credential_lock = asyncio.Lock()
        self._credential_settle: asyncio.Task[None] | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"AccountRuntime(name={self.name!r}, host={self.host!r})"

    # -- what others read ----------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.config.api.host

    @property
    def backoff(self) -> float:
        return self.poller.backoff

    @property
    def clock_offset(self) -> float:
        return self.client.clock_offset

    def source(self, kind: type[S]) -> S:
        """The account's source of this class (tests and pages reach a feature this way)."""
        for source in self.sources:
            if isinstance(source, kind):
                return source
        raise LookupError(f"account {self.name} has no {kind.__name__}")

    def alive(self) -> bool:
        """The poll loop makes progress (a failing vendor still lets it end its cycles)."""
        if not self._running or not self.poller.running:
            return False
        allowed = 2 * max(self.config.poll.interval, self.poller.backoff) + self.config.api.timeout + 5
        return time.monotonic() - self.poller.last_progress < allowed

    # -- life cycle ----------------------------------------------------------------------------
    async def _in_context(self, work: Awaitable[T]) -> T:
        """Run ``work`` as a task of the account's logging context (and the tasks it starts too)."""
        async def run() -> T:
            return await work
        return await asyncio.create_task(run(), context=self._context)

    async def _apply_sources(self, config: AccountConfig, run: bool) -> None:
        self.telemetry.started(self.host)
        for source in self.sources:
            for endpoint in source.endpoints(config):
                self.telemetry.preinitialise(endpoint)
        for source in self.sources:
            await source.apply(config, run=run)

    async def prepare(self) -> None:
        """Apply the config to every source without starting anything: the first snapshot is published."""
        await self._in_context(self._apply_sources(self.config, run=False))

    async def start(self) -> None:
        """Start every source's background work (once the HTTP server is listening)."""
        async def start() -> None:
            self._running = True
            for source in self.sources:
                source.start()
            log.info("account_started", host=self.host, flows=len(self.poller.flows))
        await self._in_context(start())

    async def apply(self, config: AccountConfig, credentials: Credentials) -> None:
        """Take a reloaded config and credentials of this account: a new client only if ``api:``
        changed (requests in flight finish on the old one); the sources restart what changed."""
        await self._in_context(self._apply(config, credentials))

    async def _apply(self, config: AccountConfig, credentials: Credentials) -> None:
        if config.api != self.config.api:
            old, self.client = self.client, build_client(config.api, credentials, self.telemetry)
            self.poller.use_client(self.client)
            task = asyncio.create_task(_close_later(old, config.api.timeout + self.config.api.timeout))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif credentials != self.credentials:
            self.client.use_credentials(credentials)
        if not self._credential_files.same_files(config.api):
            self._credential_files = CredentialFiles(config.api)
        self.config, self.credentials = config, credentials
        await self._apply_sources(config, run=self._running)

    async def stop(self, *, forget: bool = False) -> None:
        """Stop every source and close the client. ``forget``: the account was removed, so its
        series leave /metrics."""
        self._running = False
        for source in reversed(self.sources):
            await source.stop()
        await cancel(self._credential_settle)
        for task in list(self._closing):
            task.cancel()
        await self.client.close()
        if forget:
            self.telemetry.forget()
            await self._exposition.remove(self.name)
            log.info("account_removed", account=self.name)

    # -- credential rotation -------------------------------------------------------------------
    async def _check_credential_files(self) -> None:
        """Before each cycle: sign with the key and secret files' new content once it has settled.

        A change seen but not settled yet is checked again when it will have, between cycles (a
        long poll interval does not delay a rotation), by one task at a time.
        """
        files = self._credential_files
        async with self._credential_lock:  # one check at a time: the files' watch is not thread-safe
            try:
                credentials = await asyncio.get_running_loop().run_in_executor(None, files.changed, self.credentials)
            except ConfigError as exc:
                field = exc.problems[0].partition(":")[0].removeprefix("api.")
                log.error(f"{field}_unusable", problem=exc.problems[0], keeping="the previous credentials")
                return
            finally:
                if not _cancelled():
                    self._settle_credentials_later(files)
        if files is not self._credential_files:
            return  # a reload named other files meanwhile and applied what they hold: these are stale
        if credentials is not None:
            if credentials.secret() != self.credentials.secret():
                log.info("api_secret_reloaded", path=str(files.secret_file))
            if credentials.api_key != self.credentials.api_key:
                log.info("api_key_reloaded", path=str(files.key_file))
            self.credentials = credentials
            self.client.use_credentials(credentials)

    def _settle_credentials_later(self, files: CredentialFiles) -> None:
        delay = files.settles_in()
        if delay is None or files is not self._credential_files:
            return
        task = self._credential_settle
        if task is None or task.done() or task is asyncio.current_task():
            self._credential_settle = asyncio.create_task(self._check_credential_files_in(delay + 0.05))

    async def _check_credential_files_in(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._check_credential_files()


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_later(client: ItnioClient, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await client.close()


def diff_accounts(
    running: Mapping[str, AccountRuntime], config: Config, credentials: Mapping[str, Credentials]
) -> tuple[list[str], list[AccountConfig], list[AccountConfig]]:
    """(names removed, accounts added, accounts changed) between the running ones and a config."""
    wanted = {account.name: account for account in config.accounts_resolved}
    removed = [name for name in running if name not in wanted]
    added = [account for name, account in wanted.items() if name not in running]
    changed = [
        account for name, account in wanted.items()
        if name in running and (running[name].config != account or running[name].credentials != credentials[name])
    ]
    return removed, added, changed

