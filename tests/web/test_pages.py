"""The flows pages (exporter.web.pages): /flows, /flows/{account}/{key_id} and /flows/{key_id}, in HTML and
JSON, from the snapshots: one account, then two simulators (two hosts) serving the same keyIds."""

from __future__ import annotations

import html as html_module
import json
import re
import time
from typing import Any

import pytest

from exporter.itnio.endpoints import QUERY_DETAIL
from exporter.itnio.model import MAX_ANSWER_BYTES
from exporter.polling.balance import BalancePoller
from exporter.polling.discovery import Discovery
from exporter.simulator import Fault, SimNode, Simulator
from exporter.text import MAX_TEXT
from exporter.web.pages import MAX_NODES_SHOWN, MAX_SHOWN, PAGE_SIZE
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


# -- several accounts ---------------------------------------------------------------------------------
def groups(html: str) -> dict[str, tuple[str, list[int]]]:
    """Each account's group on /flows: its header's text and the keyIds of its rows, in order."""
    found = {}
    for account, head, table in re.findall(r'<section><h2><a href="[^"]*">([^<]*)</a></h2>\n<p class="account">(.*?)</p>'
                                           r"(.*?)</section>", html, re.S):
        rows = re.findall(rf'<tr><td><a href="/flows/{re.escape(account)}/(\d+)">', table)
        found[account] = (html_module.unescape(re.sub(r"<[^>]+>", "", head)), [int(key) for key in rows])
    return found


async def json_of(port: int, path: str) -> Any:
    status, headers, text = await page(port, path, {"Accept": "application/json"})
    assert headers["Content-Type"].startswith("application/json"), path
    return status, json.loads(text)


async def test_flows_are_grouped_by_account_under_a_header_of_its_host_backoff_clock_balance_and_discovery(
    two_accounts: Any
) -> None:
    exporter, eu_sim, us_sim = await two_accounts(
        eu={"balance": {"enabled": True, "low_threshold": 500}},
        us={"discovery": {"enabled": True}, "balance": {"enabled": False}},
    )
    us_sim.page_faults[1] = Fault("api", -18, HOSTILE)
    eu, us = exporter.account("eu-main"), exporter.account("us-resell")
    await eu.source(BalancePoller).poll_once()
    await eu.poller.run_cycle()
    await us.poller.run_cycle()
    assert not await us.source(Discovery).run_once()
    status, _, html = await page(exporter.port, "/flows")
    assert status == 200
    found = groups(html)
    assert list(found) == ["eu-main", "us-resell"]
    eu_head, eu_rows = found["eu-main"]
    us_head, us_rows = found["us-resell"]
    assert sorted(eu_rows) == [1, 2, 3, 4, 5] and sorted(us_rows) == [1, 2, 3, 4, 5, 6]
    assert f"host 127.0.0.1:{eu_sim.port}" in eu_head and f"host 127.0.0.1:{us_sim.port}" in us_head
    assert "not backing off" in eu_head and "clock offset +0.0s" in eu_head
    assert re.search(r"balance 150\.00 \(low below 500\) low, read \d+s ago", eu_head), eu_head
    assert "balance not read here" in us_head and "discovery" not in eu_head
    assert re.search(r"discovery \d+s ago failed: 0 discovered, 0 dropped \(api -18: ", us_head), us_head
    assert HOSTILE in us_head and HOSTILE not in html, "the vendor's text is shown, escaped"
    assert "5 flows, 0 down" in eu_head and "6 flows, 0 down" in us_head

    # back-off and a learnt clock offset are the account's own, and shown in its header only
    for key in us_sim.flows:
        us_sim.flow_faults[key] = Fault("api", -1)
    await us.poller.run_cycle()
    eu_sim.clock = lambda: time.time() + 3600  # eu-main's vendor runs an hour ahead: -16, then a learnt offset
    await eu.poller.run_cycle()
    found = groups((await page(exporter.port, "/flows"))[2])
    assert re.search(r"backing off: a probe every 10s, failing for \d+s", found["us-resell"][0])
    # (flows 3 and 4 have ended: they are not due again this cycle and stay up)
    assert "6 flows, 4 down" in found["us-resell"][0] and "clock offset +0.0s" in found["us-resell"][0]
    assert re.search(r"clock offset \+3[56]\d\d\.\ds", found["eu-main"][0]) and "not backing off" in found["eu-main"][0]
    status, data = await json_of(exporter.port, "/flows")
    heads = {head["account"]: head for head in data["accounts"]}
    assert heads["us-resell"]["backoff_seconds"] == 10 and heads["us-resell"]["backoff_since"] is not None
    assert heads["eu-main"]["backoff_seconds"] == 0 and 3500 < heads["eu-main"]["clock_offset_seconds"] < 3700
    assert heads["eu-main"]["balance"]["available"] == 150 and heads["eu-main"]["balance"]["low"] is True
    assert heads["us-resell"]["balance"] is None and heads["eu-main"]["discovery"] is None
    run = heads["us-resell"]["discovery"]
    assert run["succeeded"] is False and HOSTILE in run["error"] and run["discovered"] == 0
    assert heads["us-resell"]["host"] == f"127.0.0.1:{us_sim.port}" and heads["us-resell"]["flows"] == 6

    us_sim.page_faults.clear()
    us_sim.flow_faults.clear()
    assert await us.source(Discovery).run_once()
    await us.poller.run_cycle()  # its probe passes: the account recovers
    _, data = await json_of(exporter.port, "/flows?account=us-resell")
    head = data["accounts"][0]
    assert head["discovery"]["succeeded"] is True and head["discovery"]["error"] is None
    assert head["discovery"]["last_run"] is not None
    assert (head["backoff_seconds"], head["backoff_since"]) == (0, None)


async def test_one_keyid_in_two_accounts_has_a_page_in_each_and_bare_key_id_lists_them(two_accounts: Any) -> None:
    exporter, eu_sim, us_sim = await two_accounts()
    us_sim.flows[2].nodes = us_sim.flows[2].nodes[:1]
    for runtime in exporter.accounts.values():
        await runtime.poller.run_cycle()
    for name, simulator in (("eu-main", eu_sim), ("us-resell", us_sim)):
        status, _, html = await page(exporter.port, f"/flows/{name}/2")
        assert status == 200 and f"<th>account</th><td>{name}</td>" in html
        assert f"<th>host</th><td>127.0.0.1:{simulator.port}</td>" in html and f"<th>name</th><td>{name}-2</td>" in html
        assert f"<h2>Nodes ({len(simulator.flows[2].nodes)})</h2>" in html
    status, _, html = await page(exporter.port, "/flows/2")
    assert status == 300, "several accounts watch keyId 2: a choice, not a 404"
    assert re.findall(r'<li><a href="(/flows/[^"]+)">', html) == ["/flows/eu-main/2", "/flows/us-resell/2"]
    status, choice = await json_of(exporter.port, "/flows/2")
    assert status == 300 and choice["accounts"] == ["eu-main", "us-resell"]
    status, _, html = await page(exporter.port, "/flows/6")  # only us-resell has keyId 6
    assert status == 200 and "<th>account</th><td>us-resell</td>" in html
    status, row = await json_of(exporter.port, "/flows/us-resell/2")
    assert status == 200 and row["account"] == "us-resell" and sum(row["nodes"].values()) == 1
    for path in ("/flows/eu-main/6", "/flows/nobody/2", "/flows/424242", "/flows/eu-main/x", "/flows/%3Cb%3E/2"):
        status, _, html = await page(exporter.port, path)
        assert status == 404 and "<b>" not in html, path


async def test_filters_order_problems_first_and_every_link_keeps_them(two_accounts: Any) -> None:
    exporter, eu_sim, us_sim = await two_accounts()
    us_sim.flow_faults[3] = Fault("api", -18)
    eu_sim.flow_faults[1] = Fault("decode")
    for runtime in exporter.accounts.values():
        await runtime.poller.run_cycle()
    _, data = await json_of(exporter.port, "/flows")
    order = [(row["account"], row["key_id"]) for row in data["flows"]]
    # down first (eu 1 timing out, us 3 failing), then state exception (static flow 5: status 4), then the rest
    assert order[:4] == [("eu-main", 1), ("us-resell", 3), ("eu-main", 5), ("us-resell", 5)]
    assert order[4:] == [("eu-main", 2), ("eu-main", 3), ("eu-main", 4),
                         ("us-resell", 1), ("us-resell", 2), ("us-resell", 4), ("us-resell", 6)]
    found = groups((await page(exporter.port, "/flows"))[2])
    assert found["eu-main"][1] == [1, 5, 2, 3, 4] and found["us-resell"][1] == [3, 5, 1, 2, 4, 6]

    _, data = await json_of(exporter.port, "/flows?account=us-resell&up=0")
    assert [(r["account"], r["key_id"]) for r in data["flows"]] == [("us-resell", 3)]
    assert [head["account"] for head in data["accounts"]] == ["us-resell"] and data["accounts"][0]["matching"] == 1
    _, data = await json_of(exporter.port, "/flows?state=exception")
    assert [(r["account"], r["key_id"]) for r in data["flows"]] == [("eu-main", 5), ("us-resell", 5)]
    _, data = await json_of(exporter.port, "/flows?up=1&state=pending")
    assert {r["state"] for r in data["flows"]} == {"pending"} and all(r["up"] for r in data["flows"])

    status, _, html = await page(exporter.port, "/flows?account=eu-main&up=0")
    assert status == 200 and list(groups(html)) == ["eu-main"] and groups(html)["eu-main"][1] == [1]
    hrefs = [html_module.unescape(href) for href in re.findall(r'href="(/flows\?[^"]*)"', html)]
    assert "/flows?account=eu-main&up=0&format=json" in hrefs
    assert "/flows?account=eu-main&state=exception&up=0" in hrefs and "/flows?state=&up=0" not in hrefs
    assert "/flows?up=0" in hrefs, "'all accounts' keeps the other filters"
    state_links = [href for href in hrefs if "state=" in href]
    assert len(state_links) == 6 and all("account=eu-main" in href and "up=0" in href for href in state_links)

    for query, note in (
        ("account=%3Cb%3Enobody", "no account is named '<b>nobody' (watched: eu-main, us-resell)"),
        ("state=done", "no flow state is named 'done' (states: pending, in_progress, completed, cancelled, exception,"),
        ("up=maybe", "up='maybe': 0 (down flows only) or 1 (up flows only)"),
        ("page=-1", "page='-1': a page number from 1"),
    ):
        status, _, html = await page(exporter.port, f"/flows?{query}")
        assert status == 200 and groups(html) == {}, query
        notes = [html_module.unescape(n) for n in re.findall(r'<p class="note">(.*?)</p>', html)]
        assert len(notes) == 1 and notes[0].startswith("Nothing shown: " + note), notes
        assert "<b>nobody" not in html
        status, data = await json_of(exporter.port, f"/flows?{query}")
        assert status == 200 and data["flows"] == [] and data["accounts"] == [] and data["notes"] == notes
    _, data = await json_of(exporter.port, "/flows?state=cancelled&up=0")
    assert data["flows"] == [] and data["notes"] == ["No flow matches these filters."]


@pytest.mark.slow
async def test_five_thousand_flows_come_in_pages_of_500(two_accounts: Any) -> None:
    exporter, _, us_sim = await two_accounts(5000, 1, us_flows=6, poll={"interval": "60s"})
    us_sim.flow_faults[4] = Fault("api", -18)
    for runtime in exporter.accounts.values():
        await runtime.poller.run_cycle()
    status, _, html = await page(exporter.port, "/flows")
    assert status == 200 and len(html.encode()) < 400_000, "a page of 500 rows, not of 5,006"
    found = groups(html)
    assert sum(len(rows) for _, rows in found.values()) == PAGE_SIZE
    # problems first: us-resell's failing flow, then the flows in state exception (1,000 of eu-main's, one of us-resell's)
    assert found["us-resell"][1] == [4] and found["eu-main"][1][:3] == [5, 10, 15]
    assert "rows 1–500 of 5,006 · page 1 of 11 · " in html
    assert '<a href="/flows?page=2">next</a>' in html and '<a href="/flows?page=11">last</a>' in html
    assert "… and 4,501 more matching flows of this account on other pages." in html
    _, _, html = await page(exporter.port, "/flows?account=eu-main&state=exception&page=2")
    assert "rows 501–1,000 of 1,000 · page 2 of 2 · " in html
    assert '<a href="/flows?account=eu-main&amp;state=exception">first</a>' in html
    assert groups(html)["eu-main"][1][:2] == [2505, 2510] and len(groups(html)["eu-main"][1]) == PAGE_SIZE
    _, data = await json_of(exporter.port, "/flows?page=11")
    assert len(data["flows"]) == 6 and (data["page"], data["pages"], data["matching"]) == (11, 11, 5006)
    _, data = await json_of(exporter.port, "/flows?page=12")
    assert data["flows"] == [] and data["notes"] == ["Page 12 is past the last page (11)."]
