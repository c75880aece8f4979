"""Shared fixtures: the simulator, the exporter and plain servers on loopback, certificates, and scraping helpers."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from exporter import logs
from exporter.accounts.runtime import load_all
from exporter.config import Credentials, validate_config
from exporter.service import Exporter
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator, static_flows

if TYPE_CHECKING:
    from tests.helpers import Pki

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a command-line tool; skipped when absent, except under CI=true where it fails."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """A test that configures logging (the CLI does) must not leave its stream to the next test."""
    yield
    structlog.reset_defaults()
    logs.reset()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(flows=static_flows(5, 3))
    await simulator.start()
    yield simulator
    await simulator.stop()


SimFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start a Simulator(**kwargs) on a free loopback port; every one started is stopped after the test.

    A test may stop one itself (stop() is idempotent), e.g. to check what stopping leaves behind.
    """
    started: list[Simulator] = []

    async def factory(**kwargs: Any) -> Simulator:
        simulator = Simulator(**kwargs)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        await simulator.stop()


ServerFactory = Callable[..., Awaitable[int]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Serve an aiohttp app, or one POST handler, on a free loopback port (see :func:`serve`): returns the port.

    Every server started is cleaned up after the test.
    """
    runners: list[Any] = []

    async def factory(handler_or_app, path: str = "/voice/recallFlow/queryDetail", ssl_context=None) -> int:
        runner, port = await serve(handler_or_app, path, ssl_context=ssl_context)
        runners.append(runner)
        return port

    yield factory
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in tmp_path."""
    from tests.helpers import Pki  # tests.helpers imports this module

    return Pki(tmp_path)


def exporter_config(sim: Simulator, **sections: Any) -> dict[str, Any]:
    """A config dict for the simulator's flows; ``sections`` override api/poll/flows."""
    raw: dict[str, Any] = {
        "api": {"base_url": sim.base_url, "api_key": DEMO_API_KEY, "timeout": "2s", "max_concurrency": 4},
        "poll": {"interval": "5s"},
        "flows": [{"key_id": key, "name": f"flow-{key}"} for key in sorted(sim.flows)],
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **value}
        else:
            raw[name] = value
    return raw


def accounts_config(sims: dict[str, Simulator], *, poll: dict[str, Any] | None = None,
                    **accounts: dict[str, Any]) -> dict[str, Any]:
    """An ``accounts:`` config dict, one account per simulator (by account name), each watching its
    simulator's flows; ``accounts`` (by name) override sections of that account."""
    raw_accounts = []
    for name, sim in sims.items():
        account = exporter_config(sim, balance={"enabled": False})
        del account["poll"]
        for section, value in accounts.get(name.replace("-", "_"), {}).items():
            current = account.get(section)
            account[section] = {**current, **value} if isinstance(value, dict) and isinstance(current, dict) else value
        raw_accounts.append({"name": name, **account})
    return {"poll": {"interval": "5s", **(poll or {})}, "accounts": raw_accounts}


ExporterFactory = Callable[..., Awaitable[Exporter]]


@pytest.fixture
async def _started() -> AsyncIterator[list[Exporter]]:
    """The exporters a test started; all stopped after it (stop() may already have been called)."""
    started: list[Exporter] = []
    yield started
    for exporter in started:
        await exporter.stop()


async def _start(started: list[Exporter], config, credentials, run_poller: bool, options: dict[str, Any]) -> Exporter:
    exporter = Exporter(config, credentials, listen_address="127.0.0.1:0", **options)
    await exporter.start(run_poller=run_poller)
    started.append(exporter)
    return exporter


@pytest.fixture
def make_exporter(_started: list[Exporter]) -> ExporterFactory:
    """Start an Exporter on a free loopback port. With run_poller=False, tests drive the cycles."""

    async def factory(
        sim: Simulator,
        *,
        secret: str = DEMO_API_SECRET,
        run_poller: bool = True,
        exporter_options: dict[str, Any] | None = None,
        **sections: Any,
    ) -> Exporter:
        """``sections`` override the config; ``exporter_options`` go to Exporter (web_config, shard ...)."""
        config = validate_config(exporter_config(sim, **sections))
        credentials = Credentials(config.api.api_key or "", secret, "test")
        return await _start(_started, config, credentials, run_poller, exporter_options or {})

    return factory


@pytest.fixture
def make_accounts_exporter(_started: list[Exporter]) -> Callable[..., Awaitable[Exporter]]:
    """Start an Exporter watching one account per simulator (see :func:`accounts_config`)."""

    async def factory(sims: dict[str, Simulator], *, run_poller: bool = False,
                      exporter_options: dict[str, Any] | None = None, **overrides: Any) -> Exporter:
        config = validate_config(accounts_config(sims, **overrides))
        credentials = {name: Credentials(DEMO_API_KEY, DEMO_API_SECRET, "test") for name in sims}
        return await _start(_started, config, credentials, run_poller, exporter_options or {})

    return factory


@pytest.fixture
def exporter_from_file(_started: list[Exporter]) -> ExporterFactory:
    """Start an Exporter from a config file, as the CLI does, so that reloads re-read it."""

    async def factory(path: Path, *, run_poller: bool = False, **options: Any) -> Exporter:
        config, credentials = load_all(path)
        return await _start(_started, config, credentials, run_poller, {"config_path": path, **options})

    return factory


async def fetch(port: int, path: str = "/metrics", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET a path with no automatic decompression: (status, headers, raw body).

    Unless ``headers`` say otherwise, no compression is asked for.
    """
    headers = {"Accept-Encoding": "identity", **(headers or {})}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
            return response.status, dict(response.headers), await response.read()


async def post(port: int, path: str = "/-/reload", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST an empty body: (status, body)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}", headers=headers or {}) as response:
            return response.status, await response.read()


async def serve(handler_or_app, path: str = "/voice/recallFlow/queryDetail", ssl_context=None):
    """Serve an aiohttp app, or one POST handler at ``path``, on a free loopback port.

    Returns (runner, port); clean up with ``await runner.cleanup()``.
    """
    from aiohttp import web

    if isinstance(handler_or_app, web.Application):
        app = handler_or_app
    else:
        app = web.Application()
        app.router.add_post(path, handler_or_app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


def parse_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by sample name, parsed with prometheus_client's own parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, _, body = await fetch(port)
    assert status == 200
    return parse_samples(body.decode())


def value(samples: dict[str, list[tuple[dict[str, str], float]]], metric: str, /, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``, or None."""
    found = [v for sample_labels, v in samples.get(metric, []) if all(sample_labels.get(k) == w for k, w in labels.items())]
    assert len(found) <= 1, f"{metric}{labels} matches {len(found)} samples"
    return found[0] if found else None


TWO_ACCOUNTS = ("eu-main", "us-resell")  # the accounts of two_accounts


@pytest.fixture
def two_accounts(
    make_sim: SimFactory, _started: list[Exporter]
) -> Callable[..., Awaitable[tuple[Exporter, Simulator, Simulator]]]:
    """Two simulators (two hosts) serving the same keyIds, and an exporter watching them as the
    accounts ``eu-main`` and ``us-resell`` (the cycles are left to the test).

    ``flows``: how many flows each simulator serves (keyIds 1..flows; ``us-resell`` one more, or
    ``us_flows``); ``eu``/``us``: extra account settings (balance, discovery, ...)."""

    async def factory(
        flows: int = 5, nodes: int = 3, *, us_flows: int | None = None,
        eu: dict[str, Any] | None = None, us: dict[str, Any] | None = None, poll: dict[str, Any] | None = None,
    ) -> tuple[Exporter, Simulator, Simulator]:
        sims = [await make_sim(flows=static_flows(count, nodes)) for count in (flows, us_flows or flows + 1)]
        accounts = []
        for name, simulator, settings in zip(TWO_ACCOUNTS, sims, (eu, us), strict=True):
            accounts.append({
                "name": name,
                "api": {"base_url": simulator.base_url, "api_key": DEMO_API_KEY, "timeout": "2s", "max_concurrency": 16},
                "flows": [{"key_id": key, "name": f"{name}-{key}"} for key in sorted(simulator.flows)],
                **(settings or {}),
            })
        config = validate_config({"poll": {"interval": "5s", **(poll or {})}, "accounts": accounts})
        credentials = {name: Credentials(DEMO_API_KEY, DEMO_API_SECRET, "test") for name in TWO_ACCOUNTS}
        return await _start(_started, config, credentials, False, {}), sims[0], sims[1]

    return factory
