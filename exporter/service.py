"""Wiring: config -> client -> poller -> exposition -> HTTP app, started, reloaded and stopped as one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from . import __version__
from .aio import cancel
from .config import (
    ApiConfig,
    Config,
    ConfigError,
    CredentialFiles,
    Credentials,
    load_config,
    redact_url,
    resolve_credentials,
)
from .metrics.exposition import Exposition
from .metrics.telemetry import Telemetry
from .polling.balance import BalancePoller
from .polling.discovery import Discovery
from .polling.enrich import NodeCallEnricher
from .polling.poller import Poller
from .polling.shard import Shard
from .vendor.client import ItnioClient
from .vendor.endpoints import GET_BALANCE, GROUP_CALL_DETAIL
from .vendor.transport import client_transport_options
from .web.app import Health, make_app
from .web.auth import BasicAuth, serving_options
from .web.listener import DEFAULT_MAX_CONNECTIONS, HEADER_TIMEOUT, IDLE_TIMEOUT, Listener
from .web.webconfig import WebConfig, load_web_config

log = structlog.get_logger("exporter.service")

DEFAULT_LISTEN_ADDRESS = ":8437"


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    host = host.strip("[]")
    return (host or None), int(port)


def load_all(path: str | Path) -> tuple[Config, Credentials]:
    """Read and check a config file and the secret it names (blocking: run it off the loop)."""
    config = load_config(path)
    return config, resolve_credentials(config.api)


def build_client(
    api: ApiConfig, credentials: Credentials, telemetry: Telemetry, *, single_requests: bool = False
) -> ItnioClient:
    """The API client for an ``api:`` section, reporting into ``telemetry`` (which also shows
    whether the vendor's certificate is verified). ``single_requests``: one request per call,
    no retries and no clock correction after -16 (for --api.check, which reports what it sees)."""
    telemetry.set_config_info(tls_insecure_skip_verify=api.tls.insecure_skip_verify)
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


class ReloadCoordinator:
    """Runs reloads one at a time and merges the requests that arrive meanwhile.

    :meth:`request` returns a future for the result of the next reload to *start*: every
    request made while a reload runs shares the one that follows it, so any number of
    SIGHUPs and POSTs cost at most one more reload, and each still gets a reload that
    began after it asked (its file changes are seen). Cancelling the future withdraws the
    request (a POST whose client has gone): a reload nobody still wants is not run.
    """

    def __init__(self, reload: Callable[[], Awaitable[list[str]]]):
        self._reload = reload
        self._waiting: list[asyncio.Future[list[str]]] = []
        self._task: asyncio.Task[None] | None = None

    def request(self) -> asyncio.Future[list[str]]:
        """A future for the problems of the next reload to start (empty: it succeeded)."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reload")
        return future

    async def _run(self) -> None:
        waiting: list[asyncio.Future[list[str]]] = []
        try:
            while True:
                waiting = [future for future in self._waiting if not future.done()]
                self._waiting = []
                if not waiting:
                    return
                problems = await self._reload()
                for future in waiting:
                    if not future.done():
                        future.set_result(problems)
        finally:
            self._task = None
            for future in waiting + self._waiting:
                future.cancel()  # no-op once answered; else the reload was cancelled (stop)

    async def stop(self) -> None:
        await cancel(self._task)


class Exporter:
    """The running daemon: the poller, discovery and balance tasks and one HTTP server."""

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        listen_address: str = DEFAULT_LISTEN_ADDRESS,
        telemetry_path: str = "/metrics",
        config_path: str | Path | None = None,
        web_config: WebConfig | None = None,
        health_unauthenticated: bool = False,
        enable_lifecycle: bool = False,
        shard: Shard | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        self.config = config
        self.credentials = credentials
        self.config_path = config_path
        self.host, self.port = parse_listen_address(listen_address)
        self.telemetry_path = telemetry_path
        self.telemetry = Telemetry()
        self.shard = shard or Shard()
        self.telemetry.set_shard(self.shard)
        self.exposition = Exposition(self.telemetry.registry)
        self.client: ItnioClient | None = None
        self.poller: Poller | None = None
        self.discovery: Discovery | None = None
        self.balance: BalancePoller | None = None
        self._credential_files = CredentialFiles(config.api)
        self._credential_lock = asyncio.Lock()
        self._credential_settle: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.listener: Listener | None = None
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self._reload_lock = asyncio.Lock()
        self._reloads = ReloadCoordinator(self.reload)
        self.enable_lifecycle = enable_lifecycle
        self._closing: set[asyncio.Task[None]] = set()
        self.web_config = web_config
        self.health_unauthenticated = health_unauthenticated
        self.auth: BasicAuth | None = None

    def alive(self) -> bool:
        if self._task is None or self._task.done() or self.poller is None:
            return False
        allowed = 2 * max(self.config.poll.interval, self.poller.backoff) + self.config.api.timeout + 5
        return time.monotonic() - self.poller.last_progress < allowed

    def ready(self) -> bool:
        return self.exposition.snapshot.ready

    def _make_client(self, config: Config, credentials: Credentials) -> ItnioClient:
        return build_client(config.api, credentials, self.telemetry)

    async def start(self, *, run_poller: bool = True) -> None:
        """Serve HTTP and start polling. ``run_poller=False`` leaves the cycles to the caller (tests).

        The port is bound before any task calls the API: an exporter that cannot listen sends nothing."""
        self.client = self._make_client(self.config, self.credentials)
        self.poller = Poller(
            self.config,
            self.client,
            self.exposition.publish,
            before_cycle=self._check_credential_files,
            on_backoff=self.telemetry.backoff.set,
            shard=self.shard,
        )
        self._set_enricher(self.config)
        self.discovery = Discovery(self.poller, lambda: self.client, self.telemetry)
        await self.discovery.apply(self.config, run=False)  # sets the flows and publishes the first snapshot
        self.balance = BalancePoller(lambda: self.client, self.exposition.publish_balance)
        await self._apply_balance(self.config, run=False)
        middlewares, ssl_context, self.auth = serving_options(
            self.web_config, health_unauthenticated=self.health_unauthenticated, on_failure=self.telemetry.auth_failed
        )
        # Not a TCPSite: the Listener accepts (connection limit, header deadline, quiet accept errors).
        self.listener = Listener(
            self._new_connection,
            self.host,
            self.port,
            ssl_context=ssl_context,
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
        )
        app = make_app(
            self.exposition,
            Health(self.alive, self.ready),
            self.telemetry_path,
            [self.listener.middleware, *middlewares],
            reload=self.request_reload,
            lifecycle=self.enable_lifecycle,
        )
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
            handler_cancellation=True,  # a client that goes away stops its request's work
            keepalive_timeout=self.idle_timeout,
        )
        await self._runner.setup()
        await self.listener.start()
        self.port = self.listener.port
        self.telemetry.config_loaded()
        if self.web_config is not None:
            self.web_config.start_watching()
        if run_poller:
            self.discovery.start()
            await self._apply_balance(self.config, run=True)
            self._task = asyncio.create_task(self.poller.run(), name="poller")
        log.info(
            "started",
            version=__version__,
            listen=f"{self.host or ''}:{self.port}",
            telemetry_path=self.telemetry_path,
            tls=ssl_context is not None,
            max_connections=self.max_connections,
            basic_auth=bool(self.auth and self.auth.enabled),
            flows=len(self.poller.flows),
            shard=f"{self.shard.index}/{self.shard.count}",
            interval=self.config.poll.interval,
            base_url=redact_url(self.config.api.base_url),
        )

    def _new_connection(self) -> asyncio.Protocol:
        """aiohttp's protocol for one accepted connection."""
        assert self._runner is not None and self._runner.server is not None
        return self._runner.server()

    def _set_enricher(self, config: Config) -> None:
        """Per-node call outcomes on or off (enrich.node_calls); the cache survives a reload."""
        assert self.poller is not None
        if not config.enrich.node_calls:
            self.poller.use_enricher(None)
        elif self.poller.enricher is None:
            self.telemetry.preinitialise(GROUP_CALL_DETAIL)
            self.poller.use_enricher(NodeCallEnricher(lambda: self.client))

    async def _apply_balance(self, config: Config, *, run: bool) -> None:
        """Balance polling on or off (balance:), its series pre-initialised once it is on."""
        assert self.balance is not None
        if config.balance.enabled:
            self.telemetry.preinitialise(GET_BALANCE)
        await self.balance.apply(config, run=run)

    async def _check_credential_files(self) -> None:
        """Before each cycle: sign with the key and secret files' new content once it has settled.

        A change seen but not settled yet is checked again when it will have, between cycles (a
        long poll interval does not delay a rotation), by one task at a time.
        """
        files = self._credential_files
        if self.client is None:
            return
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

    def request_reload(self) -> asyncio.Future[list[str]]:
        """Ask for a reload (SIGHUP, POST /-/reload): a future for its problems, empty on success.

        Requests made while a reload runs are merged into one more (see :class:`ReloadCoordinator`).
        """
        return self._reloads.request()

    async def reload(self) -> list[str]:
        """Re-read the config file, the secret file and the web config now. Returns the problems,
        empty on success. Prefer :meth:`request_reload`, which merges concurrent requests.

        Every file is read and checked before anything changes: a bad one changes nothing.
        Files whose content is unchanged change nothing: no new client, no discovery restart.
        """
        if self.config_path is None:
            return ["no --config.file to reload (the demo runs without one)"]
        async with self._reload_lock:
            try:
                changed = await self._reload_files(self.config_path)
            except ConfigError as exc:
                problems = exc.problems
            except Exception as exc:  # a bug, or a file that defeats the checks: still one failed reload
                problems = [_one_line(exc)]
            else:
                self.telemetry.config_loaded()
                log.info("reloaded", flows=len(self.config.flows), changed=",".join(changed) or "nothing")
                return []
            self.telemetry.reload_failed()
            log.error("reload_failed", problems=problems, keeping="the running config")
            return problems

    async def _reload_files(self, config_path: str | Path) -> list[str]:
        """Load every file, then apply what changed (by content); the names of what changed."""
        config, credentials = await asyncio.to_thread(load_all, config_path)
        changed = [name for name, differs in (("config", config != self.config),
                                              ("secret", credentials != self.credentials)) if differs]
        web = self.web_config
        if web is not None:
            model = await asyncio.to_thread(load_web_config, web.path)
            if model != web.model:
                web.apply(model)  # ConfigError (nothing changed) if it needs a restart
                changed.append("web_config")
            elif await web.check_certificates():  # renewed in place under the same names
                changed.append("certificate")
        if "config" in changed or "secret" in changed:
            await self._apply(config, credentials)
        return changed

    async def _apply(self, config: Config, credentials: Credentials) -> None:
        assert self.poller is not None and self.client is not None
        if config.api != self.config.api and self.client is not None:
            old, self.client = self.client, self._make_client(config, credentials)
            self.poller.use_client(self.client)
            # Requests in flight finish on the old session; close it once they are done.
            task = asyncio.create_task(_close_later(old, config.api.timeout + self.config.api.timeout))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            self.client.use_credentials(credentials)
        if not self._credential_files.same_files(config.api):
            self._credential_files = CredentialFiles(config.api)
        self.config, self.credentials = config, credentials
        self._set_enricher(config)
        assert self.discovery is not None
        await self.discovery.apply(config, run=self._task is not None)  # sets the poller's flows
        await self._apply_balance(config, run=self._task is not None)

    async def stop(self) -> None:
        """Stop accepting, cancel requests in flight, close everything."""
        if self.listener is not None:
            await self.listener.stop()
        if self.auth is not None:
            self.auth.failures.stop()
        await self._reloads.stop()  # POSTs waiting for a reload answer now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._reloads.stop()  # one requested meanwhile
        if self.discovery is not None:
            await self.discovery.stop()
        if self.balance is not None:
            await self.balance.stop()
        await cancel(self._task)
        self._task = None
        await cancel(self._credential_settle)
        for task in list(self._closing):
            task.cancel()
        if self.web_config is not None:
            await self.web_config.stop_watching()
        if self.client is not None:
            await self.client.close()
            self.client = None


def _one_line(exc: BaseException) -> str:
    """An unexpected loading failure as one line. Only the exception's type: its message could
    carry what the file holds (a secret, a URL's password), which is never shown."""
    return f"config: cannot load: unexpected {type(exc).__name__} (the running config stays)"


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_later(client: ItnioClient, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await client.close()
