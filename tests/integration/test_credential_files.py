"""Credential files are read once settled: a real exporter process against the simulator, which
checks every signature and so records, as ground truth, what secret each request was signed with."""

import asyncio
import json
import sys
import time

import pytest

from exporter.itnio.signing import sign
from exporter.simulator import DEMO_API_KEY, static_flows
from tests.conftest import fetch, free_port

OLD_SECRET = "old-secret-0123456789"
NEW_SECRET = "new-secret-9876543210"


async def wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def ready(port: int) -> bool:
    try:
        return (await fetch(port, "/readyz"))[0] == 200
    except OSError:
        return False


@pytest.mark.slow
async def test_a_secret_rewritten_in_two_halves_is_never_used_half_and_an_empty_one_is_logged_once(
    tmp_path, make_sim
):
    sim = await make_sim(api_secret=OLD_SECRET, flows=static_flows(2, 2))
    secret_file = tmp_path / "api-secret"
    secret_file.write_text(OLD_SECRET + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"api:\n  base_url: {sim.base_url}\n  api_key: {DEMO_API_KEY}\n  api_secret_file: {secret_file}\n"
        "  timeout: 400ms\n  retries: 0\npoll:\n  interval: 500ms\n  max_backoff: 1s\n"
        "flows:\n" + "".join(f"  - key_id: {k}\n" for k in sim.flows)
    )
    port = free_port()
    log_path = tmp_path / "exporter.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address",
            f"127.0.0.1:{port}", "--log.format", "json", stdout=log_file, stderr=log_file,
        )
    ok = ("ok", "")
    rejected = ("api", "-1")
    try:
        deadline = time.monotonic() + 20
        while not await ready(port):
            assert proc.returncode is None and time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.1)
        await wait(lambda: sim.answers[ok] >= 2, 10, "no successful poll")

        # The vendor rotates the secret; the file is rewritten in place, in two halves, 1.2 s apart:
        # more than two poll cycles see the first half alone.
        started = time.time()
        sim.api_secret = NEW_SECRET
        half = NEW_SECRET[: len(NEW_SECRET) // 2]
        with secret_file.open("w") as out:
            out.write(half)
            out.flush()
            await asyncio.sleep(1.2)
            out.write(NEW_SECRET[len(half):] + "\n")
        ok_before = sim.answers[ok]
        await wait(lambda: sim.answers[ok] >= ok_before + 4, 15, "the rotated secret was never used")
        ended = time.time()
        stamps = range(int(started) - 2, int(ended) + 3)
        signed_with_half = len({sign(DEMO_API_KEY, half, t) for t in stamps} & sim.signs_seen)
        assert signed_with_half == 0, f"{signed_with_half} requests were signed with half the secret"
        assert {sign(DEMO_API_KEY, NEW_SECRET, t) for t in stamps} & sim.signs_seen

        # The secret file is emptied: one error line, and the polls go on with the secret in use.
        ok_before, rejected_before = sim.answers[ok], sim.answers[rejected]
        secret_file.write_text("")
        await asyncio.sleep(4)  # eight cycles; the change settles after 2 s
        assert sim.answers[ok] >= ok_before + 6 and sim.answers[rejected] == rejected_before
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    unusable = [event for event in events if event["event"] == "api_secret_file_unusable"]
    assert len(unusable) == 1 and unusable[0]["problem"] == f"api.api_secret_file: {secret_file} is empty", unusable
    assert [event["event"] for event in events].count("api_secret_reloaded") == 1
    text = log_path.read_text()
    assert OLD_SECRET not in text and NEW_SECRET not in text and half not in text
