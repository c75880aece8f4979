"""Every config that cannot be loaded is a failed reload: one line per problem, counted, logged."""

import aiohttp
import pytest
from structlog.testing import capture_logs

from exporter import reload as reload_module
from exporter.simulator import static_flows
from tests.conftest import scrape, value
from tests.integration.test_resilience import write_config

BAD = {
    "nested 5000 deep": ("flows: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "a 5000-digit integer": ("api: {api_key: k}\nflows:\n  - {key_id: " + "9" * 5000 + "}\n", "flows[0].key_id: "),
    "a lookback of 3000 years": ("api: {api_key: k}\ndiscovery: {enabled: true, lookback: 3000y}\n", "discovery.lookback: "),
}


async def post(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.text()


@pytest.fixture
async def exporter(tmp_path, exporter_from_file, make_sim):
    sim = await make_sim(flows=static_flows(2, 2))
    path = write_config(tmp_path / "c.yaml", sim, [1, 2])
    return await exporter_from_file(path, enable_lifecycle=True)


@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_config_fails_the_reload_with_one_line_per_problem(exporter, case):
    text, expected = BAD[case]
    good = exporter.config
    exporter.config_path.write_text(text)
    with capture_logs() as logs:
        status, body = await post(exporter.port, "/-/reload")
    assert status == 500 and "Traceback" not in body, body
    lines = body.splitlines()[1:]
    assert lines and any(expected in line for line in lines) and all(len(line) < 300 for line in lines), body
    [failed] = [entry for entry in logs if entry["event"] == "reload_failed"]
    assert failed["problems"] == lines
    assert value(await scrape(exporter.port), "itnio_exporter_config_last_reload_successful") == 0
    assert exporter.config is good


async def test_any_exception_while_loading_is_a_failed_reload(exporter, monkeypatch):
    def explode(path):
        raise RuntimeError("disk on fire\nsecond line, see https://user:s3cr3t@example.com/x")

    monkeypatch.setattr(reload_module, "load_all", explode)
    with capture_logs() as logs:
        problems = await exporter.reload()
    [line] = problems
    # the type, never the message: it could carry what the file holds
    assert "RuntimeError" in line and "disk on fire" not in line and "s3cr3t" not in line and "\n" not in line
    assert [entry["problems"] for entry in logs if entry["event"] == "reload_failed"] == [problems]
    assert value(await scrape(exporter.port), "itnio_exporter_config_last_reload_successful") == 0
