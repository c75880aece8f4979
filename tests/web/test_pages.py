"""The flows pages (exporter.web.pages): /flows and /flows/{key_id}, in HTML and JSON, from the snapshot."""

from __future__ import annotations

import html as html_module
import json
import re
from typing import Any

import pytest

from exporter.simulator import Fault, SimNode, Simulator
from exporter.text import MAX_TEXT
from exporter.vendor.endpoints import QUERY_DETAIL
from exporter.vendor.model import MAX_ANSWER_BYTES
from exporter.web.pages import MAX_NODES_SHOWN, MAX_SHOWN
from tests.conftest import fetch, scrape, value

HOSTILE = "<script>alert(1)</script>"


async def page(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    status, response_headers, body = await fetch(port, path, headers)
    return status, response_headers, body.decode()


def cells(html: str, key_id: int) -> list[str]:
    """The cells of a flow's row on /flows, as HTML."""
    row = re.search(rf'<tr><td><a href="/flows/default/{key_id}">{key_id}</a></td>(.*?)</tr>', html)
    assert row, f"no row for flow {key_id}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


async def test_one_row_per_flow_with_state_health_errors_and_nodes(sim: Simulator, make_exporter: Any) -> None:
    sim.flow_faults[3] = Fault("api", -18)
    flows = [{"key_id": key, "name": HOSTILE if key == 2 else f"flow-{key}"} for key in sorted(sim.flows)]
    exporter = await make_exporter(sim, run_poller=False, flows=flows)
    await exporter.account().poller.run_cycle()
    status, headers, html = await page(exporter.port, "/flows")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers["Content-Security-Policy"]
    assert html.count('<tr><td><a href="/flows/default/') == len(sim.flows)
    name, state, up, age, error, nodes, _task = cells(html, 1)
    assert (name, up) == ("flow-1", '<span class="up">up</span>')
    assert state == "pending" and age.endswith("s ago") and error == ""
    assert re.fullmatch(r"(\d+ \w+)(, \d+ \w+)*", nodes)
    assert cells(html, 3)[2] == '<span class="down">down</span>' and cells(html, 3)[4] == "api -18 Injected fault"
    assert cells(html, 2)[0] == "&lt;script&gt;alert(1)&lt;/script&gt;" and HOSTILE not in html
    assert f'href="{exporter.telemetry_path}"' in html


async def test_json_rows_for_scripts(sim: Simulator, make_exporter: Any) -> None:
    sim.flow_faults[3] = Fault("timeout")
    exporter = await make_exporter(sim, run_poller=False, api={"timeout": "200ms"}, poll={"interval": "1s"})
    await exporter.account().poller.run_cycle()
    for path, headers in (("/flows?format=json", None), ("/flows", {"Accept": "application/json"})):
        status, response_headers, text = await page(exporter.port, path, headers)
        assert status == 200 and response_headers["Content-Type"].startswith("application/json")
        rows = {row["key_id"]: row for row in json.loads(text)["flows"]}
        assert set(rows) == set(sim.flows)
        good = rows[1]
        assert good["name"] == "flow-1" and good["up"] is True and good["last_error"] is None
        assert good["state"] == "pending" and sum(good["nodes"].values()) == len(sim.flows[1].nodes)
        assert 0 <= good["last_success_age_seconds"] < 60 and good["discovered"] is False
        assert rows[3]["up"] is False and rows[3]["last_error"]["kind"] == "timeout"
        assert rows[3]["last_success"] is None and rows[3]["state"] == "unknown"
    status, _, html = await page(exporter.port, "/flows", {"Accept": "text/html,application/json;q=0.9"})
    assert status == 200 and html.startswith("<!DOCTYPE html>")


async def test_a_flow_page_shows_its_nodes_and_the_last_answer_as_decoded(sim: Simulator, make_exporter: Any) -> None:
    sim.flow_drift[2] = {"string_numbers", "unreadable_node"}
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    status, _, html = await page(exporter.port, "/flows/2")
    assert status == 200
    for node in sim.flows[2].nodes:
        assert f"<tr><td>{node.key_id}</td><td>{node.task_id}</td>" in html
    assert "<th>HTTP status</th><td>200</td>" in html
    assert re.search(r"<th>envelope</th><td>(code/msg|status/reason), code as a (number|string)</td>", html)
    assert "string_number data.status" in html and "unreadable_node data.nodeList.keyId" in html
    pre = re.search(r"<pre>(.*?)</pre>", html, re.S)
    assert pre and "&quot;nodeList&quot;: [" in pre.group(1), "the body, pretty-printed and escaped"
    assert "node-without-a-number" in pre.group(1), "the raw answer, with the node that was dropped"


async def test_a_failed_answer_is_shown_too(sim: Simulator, make_exporter: Any) -> None:
    sim.flow_faults[1] = Fault("decode")
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    _, _, html = await page(exporter.port, "/flows/1")
    assert "<th>last error</th><td>decode data is not a JSON object</td>" in html
    assert re.search(r"<th>envelope</th><td>(code/msg|status/reason), code as a", html)
    assert "<th>drift</th><td>none</td>" in html
    pre = re.search(r"<pre>(.*?)</pre>", html, re.S)
    assert pre and json.loads(html_module.unescape(pre.group(1)))["data"] == [1, 2, 3]


async def test_large_answers_are_kept_and_shown_capped(sim: Simulator, make_exporter: Any) -> None:
    flow = sim.flows[1]
    flow.nodes = [type(flow.nodes[0])(10_000 + i, 500_000 + i, 7, 2) for i in range(3000)]
    exporter = await make_exporter(sim, run_poller=False, poll={"max_nodes_per_flow": 10})
    await exporter.account().poller.run_cycle()
    state = exporter.account().poller.snapshot.flow(1)
    assert state is not None and state.last_answer is not None
    assert state.last_answer.size > MAX_ANSWER_BYTES == len(state.last_answer.body)
    _, _, html = await page(exporter.port, "/flows/1")
    pre = re.search(r"<pre>(.*?)</pre>", html, re.S)
    assert pre and pre.group(1).endswith(f"… (cut: the answer had {state.last_answer.size} bytes)")
    assert len(html_module.unescape(pre.group(1))) < MAX_SHOWN + 100
    assert f"the first {MAX_ANSWER_BYTES} bytes" in html


async def test_unknown_flows_are_404_and_pages_never_call_the_api(sim: Simulator, make_exporter: Any) -> None:
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    before = sum(sim.answers.values())
    for path in ("/flows/424242", "/flows/abc", "/flows/" + "9" * 40, "/flows/%3Cscript%3E"):
        status, _, html = await page(exporter.port, path)
        assert status == 404 and "<script>" not in html, path
    for path in ("/flows", "/flows/1", "/flows?format=json"):
        assert (await page(exporter.port, path))[0] == 200
    assert sum(sim.answers.values()) == before


async def test_the_landing_page_links_the_flows(sim: Simulator, make_exporter: Any) -> None:
    exporter = await make_exporter(sim, run_poller=False)
    _, _, html = await page(exporter.port, "/")
    assert '<a href="/flows">Flows</a>' in html
    _, _, flows = await page(exporter.port, "/flows")
    assert "Waiting for the first poll cycle." in flows


async def test_pages_of_many_flows_or_nodes_are_built_off_the_event_loop(
    sim: Simulator, make_exporter: Any, monkeypatch: Any
) -> None:
    import threading

    from exporter.web import app, pages

    built: list[tuple[str, bool]] = []
    for name in ("flows_html", "flow_html"):
        original = getattr(pages, name)

        def recording(*args: Any, _name: str = name, _original: Any = original) -> str:
            built.append((_name, threading.current_thread() is threading.main_thread()))
            return _original(*args)

        monkeypatch.setattr(pages, name, recording)
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    assert (await page(exporter.port, "/flows"))[0] == 200
    assert (await page(exporter.port, "/flows/2"))[0] == 200
    monkeypatch.setattr(app, "OFFLOAD_FLOWS", 0)  # every page is "large" now
    monkeypatch.setattr(app, "OFFLOAD_NODES", 0)
    assert (await page(exporter.port, "/flows"))[0] == 200
    assert (await page(exporter.port, "/flows/2"))[0] == 200
    assert built == [("flows_html", True), ("flow_html", True), ("flows_html", False), ("flow_html", False)]


@pytest.mark.slow
async def test_a_flow_of_100k_nodes_has_a_bounded_escaped_page(sim: Simulator, make_exporter: Any) -> None:
    total = 100_000
    sim.flows[1].nodes = [SimNode(1_000_000 + i, 5_000_000 + i, 7, i % 5) for i in range(total)]
    sim.flow_message[1] = HOSTILE + "\x1b[2J" + "m" * 1_000_000  # a huge msg with code 0, markup first
    exporter = await make_exporter(sim, run_poller=False, api={"max_response_bytes": 64 * 1024 * 1024},
                                   flows=[{"key_id": 1, "name": HOSTILE}])
    await exporter.account().poller.run_cycle()
    status, _, html = await page(exporter.port, "/flows/1")
    assert status == 200
    assert len(html.encode()) < 2 * 1024 * 1024, "a page of one flow stays under a few MiB"
    assert f"<h2>Nodes ({total})</h2>" in html
    assert html.count("<tr><td>") == MAX_NODES_SHOWN  # node rows (facts rows start with <th>)
    assert "… and 98,000 more nodes" in html
    # escaped: the flow name and the vendor's msg are text, never markup
    assert HOSTILE not in html and "<script" not in html
    assert "<h1>Flow 1</h1>" in html and "<th>name</th><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
    code = re.search(r"<th>vendor code</th><td>(.*?)</td>", html, re.S)
    assert code, "the envelope's msg is shown"
    shown = html_module.unescape(code.group(1))
    assert shown.startswith("0 " + HOSTILE) and shown.endswith(f"…[cut {1_000_000 + 29 - MAX_TEXT} chars]")
    assert len(shown) < MAX_TEXT + 50, "the msg arrives capped"
    assert "too_long msg: msg has 1000029 characters, kept 4096" in html_module.unescape(html)
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_api_schema_drift_total", endpoint=QUERY_DETAIL, field="msg", kind="too_long") == 1
    assert sum(v for labels, v in samples["itnio_recall_flow_nodes"] if labels["key_id"] == "1") == total
    # the JSON form counts every node and is as small
    status, _, text = await page(exporter.port, "/flows/1?format=json")
    row = json.loads(text)
    assert status == 200 and sum(row["nodes"].values()) == total and len(text) < 64 * 1024
    assert row["name"] == HOSTILE  # JSON carries the text; its Content-Type keeps it inert


async def test_a_flow_within_the_node_limit_lists_every_node_and_no_more_line(sim: Simulator, make_exporter: Any) -> None:
    sim.flows[1].nodes = [SimNode(10 + i, 500 + i, 7, 1) for i in range(MAX_NODES_SHOWN)]
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    _, _, html = await page(exporter.port, "/flows/1")
    assert html.count("<tr><td>") == MAX_NODES_SHOWN and "more nodes" not in html


async def test_unreadable_recall_settings_show_as_unknown(sim: Simulator, make_exporter: Any) -> None:
    sim.flow_drift[1] = {"unreadable_numbers"}  # recallNum -5, recallInterval "５"
    exporter = await make_exporter(sim, run_poller=False)
    await exporter.account().poller.run_cycle()
    _, _, html = await page(exporter.port, "/flows/1")
    assert "<th>recall interval</th><td>unknown</td>" in html and "<th>recall attempts</th><td>unknown</td>" in html
    assert "unreadable data.recallNum: data.recallNum is negative" in html
    assert "unreadable data.recallInterval: data.recallInterval is not a number in ASCII decimal" in html
