"""Fixtures of the web tests: an exporter serving with a given web config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.service import Exporter
from exporter.simulator import Simulator
from exporter.web.webconfig import WebConfig

Start = Callable[..., Awaitable[Exporter]]


@pytest.fixture
def start(sim: Simulator, make_exporter) -> Start:
    """An exporter serving with the web config at ``web_config_path``."""

    async def factory(web_config_path: Path, **kwargs: Any) -> Exporter:
        options = {"web_config": WebConfig(web_config_path), **kwargs}
        return await make_exporter(sim, run_poller=False, exporter_options=options)

    return factory
