"""The flows pages in a real browser (headless Chromium): rendered text, hostile names inert, a screenshot."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

from exporter.simulator import Simulator
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


async def test_flows_pages_render_in_a_browser_and_names_stay_text(
    sim: Simulator, make_exporter: Any, tmp_path: Path
) -> None:
    sim.flow_drift[2] = {"string_numbers"}
    flows = [{"key_id": key, "name": HOSTILE if key == 3 else f"flow-{key}"} for key in sorted(sim.flows)]
    exporter = await make_exporter(sim, run_poller=False, flows=flows)
    await exporter.account().poller.run_cycle()
    base = f"http://127.0.0.1:{exporter.port}"

    dom = await chromium(tmp_path, "--dump-dom", f"{base}/flows")
    assert "<title>itnio-exporter: recall flows</title>" in dom, "a script ran and changed the title"
    body = dom.split("<body>", 1)[1]
    assert "<script" not in body and "<img" not in body, "the hostile name became markup"
    text = text_of(dom)
    assert "flow-1" in text and "flow-2" in text and "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in text
    assert text.count(" up ") >= len(sim.flows) - 1
    rows = re.findall(r'<tr><td>default</td><td><a href="/flows/default/(\d+)">', dom)
    assert sorted(map(int, rows)) == sorted(sim.flows)

    detail = await chromium(tmp_path, "--dump-dom", f"{base}/flows/2")
    assert "<title>itnio-exporter: flow 2</title>" in detail
    detail_text = text_of(detail)
    assert "Nodes (3)" in detail_text and "string_number data.status" in detail_text
    assert "Last answer" in detail_text and "&quot;" not in detail_text.split("Last answer", 1)[1][:20]

    hostile = await chromium(tmp_path, "--dump-dom", f"{base}/flows/3")
    assert "<title>itnio-exporter: flow 3</title>" in hostile and "<img" not in hostile.split("<body>", 1)[1]

    shot = tmp_path / "flows.png"
    await chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,700", f"{base}/flows")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
