"""Wiring: config -> client -> poller -> exposition -> HTTP app, started and stopped as one."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiohttp import web

from . import __version__
from .app import Health, make_app
from .auth import BasicAuth, serving_options
from .client import ItnioClient
from .clienttls import client_transport_options
from .config import Config, Credentials
from .exposition import Exposition
from .poller import Poller
from .telemetry import Telemetry
from .webconfig import WebConfig

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
    """The running daemon: one poller task and one HTTP server."""

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        listen_address: str = DEFAULT_LISTEN_ADDRESS,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | None = None,
        health_unauthenticated: bool = False,
    ):
        self.config = config
        self.credentials = credentials
        self.host, self.port = parse_listen_address(listen_address)
        self.telemetry_path = telemetry_path
        self.telemetry = Telemetry()
        self.exposition = Exposition(self.telemetry.registry)
        self.client: ItnioClient | None = None
        self.poller: Poller | None = None
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.web_config = web_config
        self.health_unauthenticated = health_unauthenticated
        self.auth: BasicAuth | None = None

    def alive(self) -> bool:
        if self._task is None or self._task.done() or self.poller is None:
            return False
        allowed = 2 * self.config.poll.interval + self.config.api.timeout + 5
        return time.monotonic() - self.poller.last_progress < allowed

    def ready(self) -> bool:
        return self.exposition.snapshot.ready

    async def start(self, *, run_poller: bool = True) -> None:
        """Serve HTTP and start polling. ``run_poller=False`` leaves the cycles to the caller (tests)."""
        api = self.config.api
        self.client = ItnioClient(
            api.base_url,
            self.credentials,
            timeout=api.timeout,
            max_connections=api.max_concurrency,
            max_response_bytes=api.max_response_bytes,
            telemetry=self.telemetry,
            **client_transport_options(api, self.telemetry),
        )
        self.poller = Poller(self.config, self.client, self.exposition.publish)
        await self.exposition.publish(self.poller.snapshot)
        middlewares, ssl_context, self.auth = serving_options(
            self.web_config, health_unauthenticated=self.health_unauthenticated
        )
        app = make_app(self.exposition, Health(self.alive, self.ready), self.telemetry_path, middlewares)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        if sockets:
            self.port = sockets[0].getsockname()[1]
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
            flows=len(self.config.flows),
            interval=self.config.poll.interval,
            base_url=api.base_url,
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.web_config is not None:
            await self.web_config.stop_watching()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.client is not None:
            await self.client.close()
            self.client = None
