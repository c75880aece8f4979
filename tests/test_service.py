"""The wiring (exporter/service.py): what the exporter it starts exports about its own config."""

from typing import Any

from exporter.simulator import Simulator
from tests.conftest import fetch, parse_samples, value


async def test_config_info_is_exported(sim: Simulator, make_exporter: Any) -> None:
    exporter = await make_exporter(sim, run_poller=False, api={"tls": {"insecure_skip_verify": True}})
    status, _, body = await fetch(exporter.port, headers={"Accept-Encoding": "identity"})
    assert status == 200
    samples = parse_samples(body.decode())
    assert value(samples, "itnio_exporter_config_info", tls_insecure_skip_verify="true") == 1
