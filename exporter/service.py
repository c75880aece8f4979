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
    Credentials,
    FileWatch,
    load_config,
    read_secret_file,
    resolve_credentials,
)
from .metrics.exposition import Exposition
from .metrics.telemetry import Telemetry
from .polling.discovery import Discovery
from .polling.enrich import NodeCallEnricher
from .polling.poller import Poller
from .polling.shard import Shard
from .vendor.client import ItnioClient
from .vendor.endpoints import GROUP_CALL_DETAIL
from .vendor.transport import client_transport_options
from .web.app import Health, make_app
from .web.auth import BasicAuth, serving_options
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


def changed_secret(watch: FileWatch) -> str | None:
    """The new API secret if its file (the one path of ``watch``) changed since last read, else
    None. Blocking: run it in a thread (Kubernetes swaps mounted Secrets in place).

    Raises ConfigError once when the file vanishes, and on every check while the changed file
    cannot be read or is empty (the caller keeps the old secret meanwhile).
    """
    change = watch.check()
    if change is None:
        return None
    (path,) = watch.paths
    if change.vanished:
        raise ConfigError([f"api.api_secret_file: cannot read {path}"])
    secret = read_secret_file(path)  # ConfigError if unreadable or empty
    watch.accept(change)
    return secret


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
    """The running daemon: one poller task and one HTTP server."""

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
        self._secret_file = self._watch(config)
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
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

    @staticmethod
    def _watch(config: Config) -> FileWatch | None:
        path = config.api.api_secret_file
        return FileWatch(path) if path is not None else None

    async def start(self, *, run_poller: bool = True) -> None:
        """Serve HTTP and start polling. ``run_poller=False`` leaves the cycles to the caller (tests)."""
        self.client = self._make_client(self.config, self.credentials)
        self.poller = Poller(
            self.config,
            self.client,
            self.exposition.publish,
            before_cycle=self._check_secret_file,
            on_backoff=self.telemetry.backoff.set,
            shard=self.shard,
        )
        self._set_enricher(self.config)
        self.discovery = Discovery(self.poller, lambda: self.client, self.telemetry)
        await self.discovery.apply(self.config, run=run_poller)  # sets the flows and publishes the first snapshot
        middlewares, ssl_context, self.auth = serving_options(
            self.web_config, health_unauthenticated=self.health_unauthenticated
        )
        app = make_app(
            self.exposition,
            Health(self.alive, self.ready),
            self.telemetry_path,
            middlewares,
            reload=self.request_reload,
            lifecycle=self.enable_lifecycle,
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        if self._runner.addresses:
            self.port = self._runner.addresses[0][1]
        self.telemetry.config_loaded()
        if self.web_config is not None:
            self.web_config.start_watching()
        if run_poller:
            self._task = asyncio.create_task(self.poller.run(), name="poller")
        log.info(
            "started",
            version=__version__,
            listen=f"{self.host or ''}:{self.port}",
            telemetry_path=self.telemetry_path,
            tls=ssl_context is not None,
            basic_auth=bool(self.auth and self.auth.enabled),
            flows=len(self.poller.flows),
            shard=f"{self.shard.index}/{self.shard.count}",
            interval=self.config.poll.interval,
            base_url=self.config.api.base_url,
        )

    def _set_enricher(self, config: Config) -> None:
        """Per-node call outcomes on or off (enrich.node_calls); the cache survives a reload."""
        assert self.poller is not None
        if not config.enrich.node_calls:
            self.poller.use_enricher(None)
        elif self.poller.enricher is None:
            self.telemetry.preinitialise(GROUP_CALL_DETAIL)
            self.poller.use_enricher(NodeCallEnricher(lambda: self.client))

    async def _check_secret_file(self) -> None:
        if self._secret_file is None or self.client is None:
            return
        try:
            secret = await asyncio.get_running_loop().run_in_executor(None, changed_secret, self._secret_file)
        except ConfigError as exc:
            log.error("api_secret_file_unusable", problem=exc.problems[0], keeping="the previous secret")
            return
        if secret is not None:
            self.credentials = Credentials(self.credentials.api_key, secret, "api_secret_file")
            self.client.use_credentials(self.credentials)
            log.info("api_secret_reloaded", path=str(self._secret_file.paths[0]))

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
                problems = [f"unexpected {type(exc).__name__} while reloading (the running config stays)"]
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
        if config.api.api_secret_file != self.config.api.api_secret_file:
            self._secret_file = self._watch(config)
        self.config, self.credentials = config, credentials
        self._set_enricher(config)
        assert self.discovery is not None
        await self.discovery.apply(config, run=self._task is not None)  # sets the poller's flows

    async def stop(self) -> None:
        """Stop accepting, cancel requests in flight, close everything."""
        await self._reloads.stop()  # POSTs waiting for a reload answer now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._reloads.stop()  # one requested meanwhile
        if self.discovery is not None:
            await self.discovery.stop()
        await cancel(self._task)
        self._task = None
        for task in list(self._closing):
            task.cancel()
        if self.web_config is not None:
            await self.web_config.stop_watching()
        if self.client is not None:
            await self.client.close()
            self.client = None


async def _close_later(client: ItnioClient, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await client.close()
