"""The flows pages of two accounts in a real browser (headless Chromium): rendered text, hostile names and
vendor text inert (in rows and in the accounts' headers), a screenshot."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

from exporter.polling.balance import BalancePoller
from exporter.polling.discovery import Discovery
from exporter.simulator import Fault
from tests.conftest import require_tool

_profiles = itertools.count()
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


async def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a fresh profile; its standard output."""
    profile = tmp_path / f"profile-{next(_profiles)}"
    process = await asyncio.create_subprocess_exec(
        require_tool("chromium"), *FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def text_of(dom: str) -> str:
    """The visible text of a dumped DOM, roughly: tags dropped, entities kept as written."""
    body = dom.split("<body>", 1)[1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


async def test_flows_pages_render_in_a_browser_and_names_stay_text(two_accounts: Any, tmp_path: Path) -> None:
    flows = [{"key_id": key, "name": HOSTILE if key == 3 else f"flow-{key}"} for key in range(1, 6)]
    exporter, eu_sim, us_sim = await two_accounts(
        eu={"flows": flows}, us={"discovery": {"enabled": True}, "balance": {"enabled": True, "low_threshold": 500}}
    )
    eu_sim.flow_drift[2] = {"string_numbers"}
    eu_sim.flow_faults[4] = Fault("api", -18, HOSTILE)  # vendor text in a row
    us_sim.page_faults[1] = Fault("api", -18, HOSTILE)  # ... and in an account's header: discovery
    us_sim.balance_fault = Fault("api", -18, HOSTILE)  # ... and balance errors
    eu, us = exporter.account("eu-main"), exporter.account("us-resell")
    await us.source(BalancePoller).poll_once()
    await us.source(Discovery).run_once()
    for runtime in (eu, us):
        await runtime.poller.run_cycle()
    base = f"http://127.0.0.1:{exporter.port}"

    dom = await chromium(tmp_path, "--dump-dom", f"{base}/flows")
    assert "<title>itnio-exporter: recall flows</title>" in dom, "a script ran and changed the title"
    body = dom.split("<body>", 1)[1]
    assert "<script" not in body and "<img" not in body, "hostile text became markup"
    text = text_of(dom)
    assert "flow-1" in text and "flow-2" in text
    assert text.count("&lt;script&gt;document.title='pwned'&lt;/script&gt;") == 4, "name, row error, discovery, balance"
    assert f"host 127.0.0.1:{eu_sim.port}" in text and f"host 127.0.0.1:{us_sim.port}" in text
    assert re.search(r"discovery \d+s ago failed ?: 0 discovered", text) and "balance error: api -18:" in text
    groups = re.findall(r"<h2><a [^>]*>([a-z-]+)</a></h2>", dom)
    assert groups == ["eu-main", "us-resell"]
    for account, simulator in (("eu-main", eu_sim), ("us-resell", us_sim)):
        rows = re.findall(rf'<tr><td><a href="/flows/{account}/(\d+)">', dom)
        assert sorted(map(int, rows)) == sorted(simulator.flows)
    assert re.findall(r'<tr><td><a href="/flows/([a-z-]+/\d+)">', dom)[0] == "eu-main/4", "problems first"

    detail = await chromium(tmp_path, "--dump-dom", f"{base}/flows/eu-main/2")
    assert "<title>itnio-exporter: flow 2 of eu-main</title>" in detail
    detail_text = text_of(detail)
    assert "Nodes (3)" in detail_text and "string_number data.status" in detail_text
    assert "Last answer" in detail_text and "&quot;" not in detail_text.split("Last answer", 1)[1][:20]

    hostile = await chromium(tmp_path, "--dump-dom", f"{base}/flows/eu-main/3")
    assert "<title>itnio-exporter: flow 3 of eu-main</title>" in hostile and "<img" not in hostile.split("<body>", 1)[1]

    choice = await chromium(tmp_path, "--dump-dom", f"{base}/flows/2")
    assert "<title>itnio-exporter: flow 2 of which account?</title>" in choice
    assert re.findall(r'<li><a href="(/flows/[^"]+)">', choice) == ["/flows/eu-main/2", "/flows/us-resell/2"]

    shot = tmp_path / "flows.png"
    await chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,700", f"{base}/flows")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
