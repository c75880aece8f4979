"""Fixtures of the web tests: an exporter serving with a given web config, and one watching two accounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Credentials, validate_config
from exporter.service import Exporter
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator, static_flows
from exporter.web.webconfig import WebConfig

Start = Callable[..., Awaitable[Exporter]]


@pytest.fixture
def start(sim: Simulator, make_exporter) -> Start:
    """An exporter serving with the web config at ``web_config_path``."""

    async def factory(web_config_path: Path, **kwargs: Any) -> Exporter:
        options = {"web_config": WebConfig(web_config_path), **kwargs}
        return await make_exporter(sim, run_poller=False, exporter_options=options)

    return factory


HOSTS = ("eu-main", "us-resell")


@pytest.fixture
def two_accounts(make_sim, _started: list[Exporter]) -> Callable[..., Awaitable[tuple[Exporter, Simulator, Simulator]]]:
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
        for name, simulator, settings in zip(HOSTS, sims, (eu, us), strict=True):
            accounts.append({
                "name": name,
                "api": {"base_url": simulator.base_url, "api_key": DEMO_API_KEY, "timeout": "2s", "max_concurrency": 16},
                "flows": [{"key_id": key, "name": f"{name}-{key}"} for key in sorted(simulator.flows)],
                **(settings or {}),
            })
        config = validate_config({"poll": {"interval": "5s", **(poll or {})}, "accounts": accounts})
        credentials = {name: Credentials(DEMO_API_KEY, DEMO_API_SECRET, "test") for name in HOSTS}
        exporter = Exporter(config, credentials, listen_address="127.0.0.1:0")
        await exporter.start(run_poller=False)
        _started.append(exporter)
        return exporter, sims[0], sims[1]

    return factory
