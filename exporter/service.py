"""Wiring: config -> account runtimes -> exposition -> HTTP app, started, reloaded and stopped as one.

The exporter holds one :class:`~exporter.accounts.runtime.AccountRuntime` per account and
knows no vendor feature by name: each runtime owns its client and its sources. Reloads are
run by :mod:`exporter.reload`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from aiohttp import web

from . import __version__
from .accounts.runtime import AccountRuntime, diff_accounts
from .config import AccountConfig, Config, ConfigError, Credentials
from .metrics.exposition import Exposition
from .metrics.telemetry import Telemetry
from .polling.shard import Shard
from .reload import ReloadCoordinator, reload_files
from .web.app import Health, make_app
from .web.auth import BasicAuth, serving_options
from .web.listener import DEFAULT_MAX_CONNECTIONS, HEADER_TIMEOUT, IDLE_TIMEOUT, Listener
from .web.webconfig import WebConfig

log = structlog.get_logger("exporter.service")

DEFAULT_LISTEN_ADDRESS = ":8437"


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    host = host.strip("[]")
    return (host or None), int(port)


class Exporter:
    """The running daemon: one runtime per account and one HTTP server."""

    def __init__(
        self,
        config: Config,
        credentials: dict[str, Credentials] | Credentials,
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
        if isinstance(credentials, Credentials):  # the single-account form
            credentials = {account.name: credentials for account in config.accounts_resolved}
        self._start_credentials = credentials  # the runtimes own them once started (rotation updates theirs)
        self.config_path = config_path
        self.host, self.port = parse_listen_address(listen_address)
        self.telemetry_path = telemetry_path
        self.telemetry = Telemetry()
        self.shard = shard or Shard()
        self.telemetry.set_shard(self.shard)
        self.exposition = Exposition(self.telemetry.registry)
        self.accounts: dict[str, AccountRuntime] = {}
        self._running = False
        self._runner: web.AppRunner | None = None
        self.listener: Listener | None = None
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self._reload_lock = asyncio.Lock()
        self._reloads = ReloadCoordinator(self.reload)
        self.enable_lifecycle = enable_lifecycle
        self.web_config = web_config
        self.health_unauthenticated = health_unauthenticated
        self.auth: BasicAuth | None = None

    def account(self, name: str = "default") -> AccountRuntime:
        """The runtime of the account ``name`` (KeyError if it is not watched)."""
        return self.accounts[name]

    def alive(self) -> bool:
        """Every account's poll loop makes progress."""
        return self._running and bool(self.accounts) and all(runtime.alive() for runtime in self.accounts.values())

    def ready(self) -> bool:
        return self.exposition.ready

    def _runtime(self, account: AccountConfig, credentials: Credentials) -> AccountRuntime:
        return AccountRuntime(
            account, credentials, telemetry=self.telemetry, exposition=self.exposition, shard=self.shard
        )

    def _set_config_info(self) -> None:
        self.telemetry.set_config_info(
            tls_insecure_skip_verify=any(a.api.tls.insecure_skip_verify for a in self.config.accounts_resolved)
        )

    async def start(self, *, run_poller: bool = True) -> None:
        """Serve HTTP and start polling. ``run_poller=False`` leaves the cycles to the caller (tests).

        The port is bound before any task calls the API: an exporter that cannot listen sends nothing."""
        self._set_config_info()
        for account in self.config.accounts_resolved:
            runtime = self.accounts[account.name] = self._runtime(account, self._start_credentials[account.name])
            await runtime.prepare()  # publishes the first snapshot
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
            self._running = True
            for runtime in self.accounts.values():
                await runtime.start()
        log.info(
            "started",
            version=__version__,
            listen=f"{self.host or ''}:{self.port}",
            telemetry_path=self.telemetry_path,
            tls=ssl_context is not None,
            max_connections=self.max_connections,
            basic_auth=bool(self.auth and self.auth.enabled),
            accounts=",".join(self.accounts),
            flows=sum(len(runtime.poller.flows) for runtime in self.accounts.values()),
            shard=f"{self.shard.index}/{self.shard.count}",
        )

    def _new_connection(self) -> asyncio.Protocol:
        """aiohttp's protocol for one accepted connection."""
        assert self._runner is not None and self._runner.server is not None
        return self._runner.server()

    # -- reloads (exporter.reload) ---------------------------------------------------------------
    def request_reload(self) -> asyncio.Future[list[str]]:
        """Ask for a reload (SIGHUP, POST /-/reload): a future for its problems, empty on success.

        Requests made while a reload runs are merged into one more (see :class:`ReloadCoordinator`).
        """
        return self._reloads.request()

    async def reload(self) -> list[str]:
        """Re-read the config file, the credential files and the web config now. Returns the problems,
        empty on success. Prefer :meth:`request_reload`, which merges concurrent requests."""
        if self.config_path is None:
            return ["no --config.file to reload (the demo runs without one)"]
        async with self._reload_lock:
            try:
                changed = await reload_files(self.config_path, self, self.web_config)
            except ConfigError as exc:
                problems = exc.problems
            except Exception as exc:  # a bug, or a file that defeats the checks: still one failed reload
                problems = [_one_line(exc)]
            else:
                self.telemetry.config_loaded()
                log.info("reloaded", accounts=",".join(self.accounts), changed=",".join(changed) or "nothing")
                return []
            self.telemetry.reload_failed()
            log.error("reload_failed", problems=problems, keeping="the running config")
            return problems

    def current(self) -> tuple[Config, dict[str, Credentials]]:
        """The running config, and each account's credentials as it signs with them now (after any rotation)."""
        return self.config, {name: runtime.credentials for name, runtime in self.accounts.items()}

    async def apply_accounts(self, config: Config, credentials: dict[str, Credentials]) -> None:
        """Stop the removed accounts, apply the changed ones, start the added ones (by name)."""
        removed, added, changed = diff_accounts(self.accounts, config, credentials)
        self.config = config
        self._set_config_info()
        for name in removed:
            await self.accounts.pop(name).stop(forget=True)
        for account in changed:
            await self.accounts[account.name].apply(account, credentials[account.name])
        for account in added:
            runtime = self.accounts[account.name] = self._runtime(account, credentials[account.name])
            await runtime.prepare()
            if self._running:
                await runtime.start()
        # the accounts in the order configured
        self.accounts = {account.name: self.accounts[account.name] for account in config.accounts_resolved}

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
        self._running = False
        for runtime in self.accounts.values():
            await runtime.stop()
        if self.web_config is not None:
            await self.web_config.stop_watching()


def _one_line(exc: BaseException) -> str:
    """An unexpected loading failure as one line. Only the exception's type: its message could
    carry what the file holds (a secret, a URL's password), which is never shown."""
    return f"config: cannot load: unexpected {type(exc).__name__} (the running config stays)"
