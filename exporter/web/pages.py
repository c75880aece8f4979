"""The flows pages: ``/flows`` (one row per watched flow) and ``/flows/{key_id}`` (its nodes and the
last answer the API gave for it), in HTML for people and JSON for scripts.

Rules:
- Built from a snapshot only: a page view never calls the API.
- Everything shown is escaped (``html.escape`` with quotes): flow names come from the config, task
  names and answers from the vendor. The pages need no JavaScript, and their Content-Security-Policy
  forbids scripts, so a name that slipped through would still not run.
- Readable on a phone: one column of text, tables that scroll sideways.
- The last answer is shown pretty-printed when it is JSON, as text otherwise, and never longer than
  :data:`MAX_SHOWN` characters.
- Bounded whatever the API sends: ``/flows/{key_id}`` lists at most :data:`MAX_NODES_SHOWN` nodes and
  says how many more there are; vendor text arrives capped (``exporter.vendor.decoding``), so a page
  of one flow stays well under a few MiB and takes bounded time to render.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..polling.snapshot import FlowState, Snapshot
from ..vendor.errors import Failure
from ..vendor.model import ALL_STATES, Answer, state_name

MAX_SHOWN = 64 * 1024  # characters of an answer shown on a page
MAX_NODES_SHOWN = 2000  # nodes listed on a flow's page; the rest are counted ("… and 98,000 more nodes")
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;line-height:1.4;color:#111}
table{border-collapse:collapse;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}
td{white-space:pre-line}
.down{color:#a00;font-weight:600}.up{color:#070}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem;white-space:pre-wrap;word-break:break-all}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def _error_text(error: dict[str, str] | None) -> str:
    return " ".join(part for part in (error["kind"], error["code"], error["message"]) if part) if error else ""


def _error(error: Failure | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"kind": error.kind.value, "code": error.code, "message": error.message}


def flow_row(flow: FlowState, now: float, account: str = "default") -> dict[str, Any]:
    """One flow as the JSON of ``/flows?format=json`` shows it."""
    detail = flow.visible_detail
    nodes = Counter(state_name(node.status) for node in detail.nodes) if detail is not None else Counter()
    return {
        "account": account,
        "key_id": flow.key_id,
        "name": flow.name,
        "state": state_name(detail.status) if detail is not None else "unknown",
        "up": flow.up,
        "stale": flow.stale,
        "last_success": flow.last_success,
        "last_success_age_seconds": None if flow.last_success is None else round(now - flow.last_success, 3),
        "last_error": _error(flow.last_error),
        "nodes": {state: nodes[state] for state in ALL_STATES if nodes[state]},
        "discovered": flow.record is not None,
        "task_name": flow.record.task_name if flow.record is not None else None,
    }


def flows_json(snapshots: Sequence[Snapshot], now: float) -> dict[str, Any]:
    return {
        "ready": bool(snapshots) and all(snapshot.ready for snapshot in snapshots),
        "flows": [flow_row(flow, now, snapshot.account) for snapshot in snapshots for flow in snapshot.flows],
    }


def json_text(value: Any) -> str:
    """JSON for scripts; ASCII, so that no text from the vendor can make it unencodable."""
    return json.dumps(value, indent=1)


def not_found(key: str) -> str:
    return _page("itnio-exporter: no such flow", f'<p><a href="/flows">All flows</a></p>\n<h1>No flow {_e(key[:40])}</h1>'
                 "\n<p>This exporter watches no flow with that key_id.</p>")


def flows_html(snapshots: Sequence[Snapshot], now: float, links: list[tuple[str, str]]) -> str:
    """The ``/flows`` page."""
    rows = []
    for account, flow in ((snapshot.account, flow) for snapshot in snapshots for flow in snapshot.flows):
        row = flow_row(flow, now, account)
        error = row["last_error"]
        error_text = _error_text(error)
        nodes = ", ".join(f"{count} {state}" for state, count in row["nodes"].items()) or "none"
        status = '<span class="up">up</span>' if flow.up else '<span class="down">down</span>'
        rows.append(
            "<tr>"
            f'<td>{_e(account)}</td><td><a href="/flows/{_e(account)}/{flow.key_id}">{flow.key_id}</a></td>'
            f"<td>{_e(flow.name)}</td><td>{_e(row['state'])}</td><td>{status}</td>"
            f"<td>{_e(_age(row['last_success_age_seconds']))}</td><td>{_e(error_text)}</td>"
            f"<td>{_e(nodes)}</td><td>{_e(row['task_name'] or '')}</td>"
            "</tr>"
        )
    ready = "" if snapshots and all(s.ready for s in snapshots) else "<p>Waiting for the first poll cycle.</p>"
    nav = " · ".join(f'<a href="{_e(href)}">{_e(text)}</a>' for href, text in links)
    body = (
        f"<h1>Recall flows</h1>\n<p>{nav}</p>\n{ready}"
        f"<p>{sum(len(s.flows) for s in snapshots)} flows watched. "
        '<a href="/flows?format=json">JSON</a></p>\n'
        '<div class="scroll"><table>\n<thead><tr><th>account</th><th>key_id</th><th>name</th><th>state</th><th>up</th>'
        "<th>last success</th><th>last error</th><th>nodes</th><th>task name</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )
    return _page("itnio-exporter: recall flows", body)


def answer_text(answer: Answer) -> str:
    """The answer's body for people: pretty JSON when it parses, else its text; at most MAX_SHOWN characters."""
    text = answer.body.decode("utf-8", "replace")
    try:
        text = json.dumps(json.loads(answer.body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN]
    if len(text) < len(answer.body.decode("utf-8", "replace")) or answer.size > len(answer.body):
        text += f"\n… (cut: the answer had {answer.size} bytes)"
    return text


def answer_facts(answer: Answer) -> list[tuple[str, str]]:
    """How an answer was read, as (what, value) pairs."""
    facts = [("HTTP status", str(answer.http_status)), ("size", f"{answer.size} bytes")]
    if answer.size > len(answer.body):
        facts.append(("kept", f"the first {len(answer.body)} bytes"))
    envelope = answer.envelope
    if envelope is not None:
        facts.append(("envelope", f"{envelope.form}, code as a {envelope.code_type}"))
        facts.append(("vendor code", f"{envelope.code} {envelope.message}".strip()))
    else:
        facts.append(("envelope", "none read (not JSON, or no code/status)"))
    facts.append(("drift", "\n".join(f"{d.kind} {d.field}: {d.detail}" for d in answer.drift) or "none"))
    return facts


def flow_html(flow: FlowState, now: float) -> str:
    """The ``/flows/{key_id}`` page."""
    row = flow_row(flow, now)
    detail = flow.visible_detail
    error = row["last_error"]
    facts = [
        ("name", flow.name),
        ("state", row["state"]),
        ("up", "yes" if flow.up else "no"),
        ("last success", _age(row["last_success_age_seconds"])),
        ("last error", _error_text(error) or "none"),
        ("polls", str(flow.polls)),
    ]
    if flow.record is not None:
        facts += [("task name", flow.record.task_name), ("task id", _opt(flow.record.task_id))]
    if detail is not None:
        interval = detail.recall_interval_minutes
        facts += [("recall interval", "unknown" if interval is None else f"{interval} min"),
                  ("recall attempts", _opt(detail.recall_num) or "unknown"), ("recall type", detail.recall_type_name)]
    parts = [f'<p><a href="/flows">All flows</a></p>\n<h1>Flow {flow.key_id}</h1>', _facts(facts)]
    calls = dict(flow.calls)
    if detail is not None:
        node_rows = []
        for node in detail.nodes[:MAX_NODES_SHOWN]:
            stats = calls.get(node.key_id)
            counts = "" if stats is None else (
                f"{_n(stats.calls)} calls, {_n(stats.succeeded)} answered, {_n(stats.failed)} failed"
            )
            node_rows.append(
                f"<tr><td>{node.key_id}</td><td>{_e(_opt(node.task_id))}</td><td>{_e(_opt(node.script_id))}</td>"
                f"<td>{_e(state_name(node.status))}</td><td>{_e(counts)}</td></tr>"
            )
        parts.append(
            f"<h2>Nodes ({len(detail.nodes)})</h2>\n"
            '<div class="scroll"><table><thead><tr><th>node key_id</th><th>task_id</th><th>script_id</th>'
            "<th>state</th><th>calls</th></tr></thead><tbody>\n" + "\n".join(node_rows) + "\n</tbody></table></div>"
        )
        if (rest := len(detail.nodes) - len(node_rows)) > 0:
            parts.append(f'<p class="more">… and {rest:,} more nodes (counted by state on <a href="/flows">all flows</a>'
                         ' and in /metrics).</p>')
    answer = flow.last_answer
    if answer is None:
        parts.append("<h2>Last answer</h2>\n<p>No answer received yet.</p>")
    else:
        received = _age(now - answer.received)
        parts.append(f"<h2>Last answer ({_e(received)})</h2>\n" + _facts(answer_facts(answer))
                     + f"\n<pre>{_e(answer_text(answer))}</pre>")
    return _page(f"itnio-exporter: flow {flow.key_id}", "\n".join(parts))


def _facts(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(what)}</th><td>{_e(value)}</td></tr>" for what, value in pairs)
    return f'<div class="scroll"><table>{rows}</table></div>'


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
