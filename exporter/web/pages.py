"""The flows pages: ``/flows`` (every watched flow, grouped by account), ``/flows/{account}/{key_id}``
(one flow: its nodes and the last answer the API gave for it) and ``/flows/{key_id}`` (the flow of
that keyId when one account has it; a list of the candidates when several do), in HTML for people
and JSON for scripts.

Rules:
- Built from the accounts' snapshots and balance states only (immutable, published by the
  runtime): a page view never calls the API, nor a runtime.
- Everything shown is escaped (``html.escape`` with quotes): flow names come from the config, task
  names and answers from the vendor. The pages need no JavaScript, and their Content-Security-Policy
  forbids scripts (and forms: filters are links), so a name that slipped through would still not run.
- Readable on a phone: one column of text, tables that scroll sideways.
- Usable at thousands of flows: ``/flows`` takes the filters ``account``, ``state`` and ``up``,
  shows problems first (down, then state exception or unknown), and at most :data:`PAGE_SIZE` rows a
  page (``?page=N``), counting what it does not show. Every link keeps the filters. A filter value
  it does not know (an account not watched, a state not on the scale) shows nothing and says why:
  never an error. The JSON takes the same filters and pages.
- The last answer is shown pretty-printed when it is JSON, as text otherwise, and never longer than
  :data:`MAX_SHOWN` characters.
- Bounded whatever the API sends: a flow's page lists at most :data:`MAX_NODES_SHOWN` nodes and
  says how many more there are; vendor text arrives capped (``exporter.itnio.decoding``), so a page
  of one flow stays well under a few MiB and takes bounded time to render.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..itnio.errors import Failure
from ..itnio.model import ALL_STATES, Answer, state_name
from ..polling.balance import BalanceState
from ..polling.snapshot import FlowState, Snapshot

MAX_SHOWN = 64 * 1024  # characters of an answer shown on a page
MAX_NODES_SHOWN = 2000  # nodes listed on a flow's page; the rest are counted ("… and 98,000 more nodes")
PAGE_SIZE = 500  # flow rows on one page of /flows (HTML and JSON); the rest are counted and linked
MAX_PAGE = 1_000_000  # a ?page= beyond this is not a page number
PROBLEM_STATES = frozenset({"exception", "unknown"})
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'"
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1rem;line-height:1.4;color:#111}
table{border-collapse:collapse;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}
td{white-space:pre-line}
.down{color:#a00;font-weight:600}.up{color:#070}
.account{margin:.2rem 0 .5rem;font-size:.9rem}
.note{background:#fff4d6;padding:.3rem .5rem}
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
    return _span(seconds) + " ago" if seconds >= 0 else "just now"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _error_text(error: dict[str, str] | None) -> str:
    return " ".join(part for part in (error["kind"], error["code"], error["message"]) if part) if error else ""


def _error(error: Failure | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"kind": error.kind.value, "code": error.code, "message": error.message}


def flow_state(flow: FlowState) -> str:
    """The flow's state name, by its last answer that is not stale (``unknown`` without one)."""
    detail = flow.visible_detail
    return state_name(detail.status) if detail is not None else "unknown"


def problem_rank(flow: FlowState) -> int:
    """0: down; 1: up but in state exception (or one off the scale); 2: the rest."""
    if not flow.up:
        return 0
    return 1 if flow_state(flow) in PROBLEM_STATES else 2


def flow_row(flow: FlowState, now: float, account: str = "default") -> dict[str, Any]:
    """One flow as the JSON of ``/flows?format=json`` shows it."""
    detail = flow.visible_detail
    nodes = Counter(state_name(node.status) for node in detail.nodes) if detail is not None else Counter()
    return {
        "account": account,
        "key_id": flow.key_id,
        "name": flow.name,
        "state": flow_state(flow),
        "up": flow.up,
        "stale": flow.stale,
        "last_success": flow.last_success,
        "last_success_age_seconds": None if flow.last_success is None else round(now - flow.last_success, 3),
        "last_error": _error(flow.last_error),
        "nodes": {state: nodes[state] for state in ALL_STATES if nodes[state]},
        "discovered": flow.record is not None,
        "task_name": flow.record.task_name if flow.record is not None else None,
    }


# -- /flows: filters, order and pages ---------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """What a ``/flows`` query asks for, as given (for links) and as understood (for matching)."""

    account: str = ""  # "": every account
    state: str = ""  # "": any state
    up: str = ""  # "0": down flows only, "1": up ones only, "": both
    page: int = 1
    problems: tuple[str, ...] = ()  # what the query asks that cannot be: nothing matches then

    @classmethod
    def parse(cls, query: Mapping[str, str], accounts: Sequence[str]) -> Filters:
        """Read ``?account=``, ``?state=``, ``?up=`` and ``?page=``; anything unknown is a problem, never an error."""
        account, state, up = (query.get(name, "")[:100] for name in ("account", "state", "up"))
        raw_page = query.get("page", "1")
        problems = []
        if account and account not in accounts:
            problems.append(f"no account is named {account!r} (watched: {', '.join(accounts) or 'none'})")
        if state and state not in ALL_STATES:
            problems.append(f"no flow state is named {state!r} (states: {', '.join(ALL_STATES)})")
        if up not in ("", "0", "1"):
            problems.append(f"up={up!r}: 0 (down flows only) or 1 (up flows only)")
        page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() and len(raw_page) < 8 else 0
        if not 1 <= page <= MAX_PAGE:
            problems.append(f"page={raw_page[:20]!r}: a page number from 1")
            page = 1
        return cls(account, state, up, page, tuple(problems))

    def matches(self, account: str, flow: FlowState) -> bool:
        return (
            not self.problems
            and (not self.account or account == self.account)
            and (not self.state or flow_state(flow) == self.state)
            and (not self.up or flow.up == (self.up == "1"))
        )

    def href(self, **changes: str | int) -> str:
        """``/flows`` with these filters, changed by ``changes``: at page 1 unless ``page`` is given."""
        values = {"account": self.account, "state": self.state, "up": self.up, "page": 1, **changes}
        query = urlencode([(name, value) for name, value in values.items() if value not in ("", 1)])
        return "/flows" + ("?" + query if query else "")

    def as_json(self) -> dict[str, str | int | None]:
        return {"account": self.account or None, "state": self.state or None, "up": self.up or None, "page": self.page}


@dataclass(frozen=True)
class AccountCounts:
    flows: int  # watched
    down: int
    matching: int  # matching the filters
    shown: tuple[FlowState, ...]  # the ones on this page, in order


@dataclass(frozen=True)
class FlowsView:
    """One page of ``/flows``: the accounts it shows (with their counts) and how many flows match."""

    filters: Filters
    accounts: list[tuple[Snapshot, AccountCounts]]
    rows: list[tuple[Snapshot, FlowState]]  # the page's flows, problems first
    matching: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matching / PAGE_SIZE))

    @classmethod
    def of(cls, snapshots: Sequence[Snapshot], filters: Filters) -> FlowsView:
        """Filter every flow, order problems first (then by account, then keyId), and cut out the page."""
        matching: list[tuple[int, int, int, Snapshot, FlowState]] = []
        for index, snapshot in enumerate(snapshots):
            matching.extend((problem_rank(flow), index, flow.key_id, snapshot, flow)
                            for flow in snapshot.flows if filters.matches(snapshot.account, flow))
        matching.sort(key=lambda item: item[:3])
        per_account = Counter(snapshot.account for _, _, _, snapshot, _ in matching)
        start = (filters.page - 1) * PAGE_SIZE
        rows = [(snapshot, flow) for _, _, _, snapshot, flow in matching[start:start + PAGE_SIZE]]
        shown: dict[str, list[FlowState]] = {snapshot.account: [] for snapshot in snapshots}
        for snapshot, flow in rows:
            shown[snapshot.account].append(flow)
        accounts = [
            (snapshot, AccountCounts(len(snapshot.flows), sum(not flow.up for flow in snapshot.flows),
                                     per_account[snapshot.account], tuple(shown[snapshot.account])))
            for snapshot in snapshots
            if not filters.problems and (not filters.account or snapshot.account == filters.account)
        ]
        return cls(filters, accounts, rows, len(matching), sum(len(snapshot.flows) for snapshot in snapshots))

    @property
    def notes(self) -> list[str]:
        """Why nothing, or less than expected, is shown."""
        if self.filters.problems:
            return ["Nothing shown: " + problem for problem in self.filters.problems]
        if not self.matching:
            return ["No flow matches these filters." if self.total else "No flows are watched."]
        if self.filters.page > self.pages:
            return [f"Page {self.filters.page} is past the last page ({self.pages})."]
        return []


# -- the accounts' headers --------------------------------------------------------------------------
def account_json(snapshot: Snapshot, balance: BalanceState | None, counts: AccountCounts, now: float) -> dict[str, Any]:
    """What ``/flows`` says of an account above its flows."""
    run = snapshot.discovery
    return {
        "account": snapshot.account,
        "host": snapshot.host,
        "ready": snapshot.ready,
        "flows": counts.flows,
        "down": counts.down,
        "matching": counts.matching,
        "shown": len(counts.shown),
        "backoff_seconds": snapshot.backoff,
        "backoff_since": snapshot.backoff_since,
        "clock_offset_seconds": round(snapshot.clock_offset, 3),
        "balance": None if balance is None or not balance.enabled else _balance_json(balance, now),
        "discovery": None if run is None else {
            "last_run": run.finished, "succeeded": run.succeeded if run.finished is not None else None,
            "discovered": run.discovered, "dropped": run.dropped, "error": run.error or None,
        },
    }


def _balance_json(state: BalanceState, now: float) -> dict[str, Any]:
    visible = state.visible(now)
    error = state.last_error
    return {
        "available": None if visible is None else visible.available,
        "amounts": {} if visible is None else dict(visible.amounts),
        "low_threshold": state.low_threshold,
        "low": visible is not None and state.low_threshold is not None and visible.available < state.low_threshold,
        "last_success": state.last_success,
        "stale": state.balance is not None and visible is None,
        "last_error": None if error is None else str(error),
    }


def _account_facts(head: dict[str, Any], now: float) -> list[str]:
    """The header of an account's group, as HTML fragments (each one escaped)."""
    facts = [f"host <b>{_e(head['host'] or '?')}</b>"]
    if head["backoff_seconds"]:
        since = head["backoff_since"]
        failing = f", failing for {_span(now - since)}" if since is not None else ""
        facts.append(f'<span class="down">backing off: a probe every {_e(_span(head["backoff_seconds"]))}'
                     f"{_e(failing)}</span>")
    else:
        facts.append('<span class="up">not backing off</span>')
    facts.append(f"clock offset {head['clock_offset_seconds']:+.1f}s")
    balance = head["balance"]
    if balance is None:
        facts.append("balance not read here (off, or read by another shard replica)")
    else:
        threshold = "" if balance["low_threshold"] is None else f" (low below {balance['low_threshold']:g})"
        available = balance["available"]
        if available is not None:
            low = ' <span class="down">low</span>' if balance["low"] else ""
            facts.append(f"balance {available:,.2f}{_e(threshold)}{low}, read {_e(_age(now - balance['last_success']))}")
        elif balance["stale"]:
            facts.append(f'<span class="down">balance stale</span>{_e(threshold)}: last read '
                         f"{_e(_age(now - balance['last_success']))}")
        else:
            facts.append(f"balance not read yet{_e(threshold)}")
        if balance["last_error"]:
            facts.append(f"balance error: {_e(balance['last_error'])}")
    run = head["discovery"]
    if run is not None:
        if run["last_run"] is None:
            facts.append("discovery: no run yet")
        else:
            verdict = "succeeded" if run["succeeded"] else '<span class="down">failed</span>'
            facts.append(f"discovery {_e(_age(now - run['last_run']))} {verdict}: {run['discovered']:,} discovered, "
                         f"{run['dropped']:,} dropped" + (f" ({_e(run['error'])})" if run["error"] else ""))
    facts.append(f"{head['flows']:,} flows, {head['down']:,} down" + ("" if head["ready"] else ", first cycle not done"))
    return facts


def flows_json(
    snapshots: Sequence[Snapshot], now: float, filters: Filters | None = None,
    balances: Mapping[str, BalanceState] | None = None,
) -> dict[str, Any]:
    """The JSON of ``/flows``: the accounts' headers and one page of rows, under ``filters``."""
    view = FlowsView.of(snapshots, filters or Filters())
    return {
        **_summary(view, snapshots, now, balances or {}),
        "flows": [flow_row(flow, now, snapshot.account) for snapshot, flow in view.rows],
    }


def _summary(
    view: FlowsView, snapshots: Sequence[Snapshot], now: float, balances: Mapping[str, BalanceState]
) -> dict[str, Any]:
    """All of the JSON of ``/flows`` but the rows."""
    return {
        "ready": bool(snapshots) and all(snapshot.ready for snapshot in snapshots),
        "filters": view.filters.as_json(),
        "notes": view.notes,
        "matching": view.matching,
        "page": view.filters.page,
        "pages": view.pages,
        "page_size": PAGE_SIZE,
        "accounts": [account_json(snapshot, balances.get(snapshot.account), counts, now)
                     for snapshot, counts in view.accounts],
    }


def json_text(value: Any) -> str:
    """JSON for scripts; ASCII, so that no text from the vendor can make it unencodable."""
    return json.dumps(value, indent=1)


def not_found(key: str, account: str | None = None) -> str:
    where = "" if account is None else f" in account {_e(account[:70])}"
    return _page("itnio-exporter: no such flow", f'<p><a href="/flows">All flows</a></p>\n<h1>No flow {_e(key[:40])}'
                 f"{where}</h1>\n<p>This exporter watches no flow with that key_id{where}.</p>")


def ambiguous(key_id: int, accounts: Sequence[str]) -> str:
    """``/flows/{key_id}`` when several accounts watch a flow of that keyId: the candidates."""
    items = "".join(f'<li><a href="/flows/{_e(account)}/{key_id}">{_e(account)}</a></li>' for account in accounts)
    return _page(f"itnio-exporter: flow {key_id} of which account?",
                 f'<p><a href="/flows">All flows</a></p>\n<h1>Flow {key_id}: which account?</h1>\n'
                 f"<p>{len(accounts)} accounts watch a flow with key_id {key_id}:</p>\n<ul>{items}</ul>")


def _row(account: str, flow: FlowState, now: float) -> str:
    row = flow_row(flow, now, account)
    nodes = ", ".join(f"{count} {state}" for state, count in row["nodes"].items()) or "none"
    status = '<span class="up">up</span>' if flow.up else '<span class="down">down</span>'
    return (
        f'<tr><td><a href="/flows/{_e(account)}/{flow.key_id}">{flow.key_id}</a></td>'
        f"<td>{_e(flow.name)}</td><td>{_e(row['state'])}</td><td>{status}</td>"
        f"<td>{_e(_age(row['last_success_age_seconds']))}</td><td>{_e(_error_text(row['last_error']))}</td>"
        f"<td>{_e(nodes)}</td><td>{_e(row['task_name'] or '')}</td></tr>"
    )


def _choices(label: str, current: str, options: list[tuple[str, str]], filters: Filters, name: str) -> str:
    links = [f"<b>{_e(text)}</b>" if value == current else f'<a href="{_e(filters.href(**{name: value}))}">{_e(text)}</a>'
             for value, text in options]
    return f"{_e(label)}: " + " ".join(links)


def flows_html(
    snapshots: Sequence[Snapshot], now: float, links: list[tuple[str, str]], filters: Filters | None = None,
    balances: Mapping[str, BalanceState] | None = None,
) -> str:
    """The ``/flows`` page: a group per account (its header, then its flows on this page)."""
    view_filters = filters or Filters()
    view = FlowsView.of(snapshots, view_filters)
    data = _summary(view, snapshots, now, balances or {})
    accounts = [snapshot.account for snapshot in snapshots]
    nav = " · ".join(f'<a href="{_e(href)}">{_e(text)}</a>' for href, text in links)
    ready = "" if data["ready"] else "<p>Waiting for the first poll cycle.</p>\n"
    json_href = view_filters.href(page=view_filters.page, format="json")
    choose = "<br>".join((
        _choices("account", view_filters.account, [("", "all"), *((a, a) for a in accounts)], view_filters, "account"),
        _choices("state", view_filters.state, [("", "any"), *((s, s) for s in ALL_STATES)], view_filters, "state"),
        _choices("up", view_filters.up, [("", "any"), ("0", "down only"), ("1", "up only")], view_filters, "up"),
    ))
    parts = [
        f"<h1>Recall flows</h1>\n<p>{nav}</p>\n{ready}"
        f"<p>{sum(len(s.flows) for s in snapshots):,} flows watched in {len(snapshots)} "
        f"account{'s' if len(snapshots) != 1 else ''}; {data['matching']:,} match, problems first "
        f'(down, then state exception). <a href="{_e(json_href)}">JSON</a></p>\n'
        f'<p class="filters">{choose}</p>',
        *(f'<p class="note">{_e(note)}</p>' for note in data["notes"]),
        _pager(view),
    ]
    for (snapshot, counts), head in zip(view.accounts, data["accounts"], strict=True):
        parts.append(_group(snapshot, counts, head, view_filters, now))
    parts.append(_pager(view))
    return _page("itnio-exporter: recall flows", "\n".join(part for part in parts if part))


_TABLE_HEAD = (
    '<div class="scroll"><table>\n<thead><tr><th>key_id</th><th>name</th><th>state</th><th>up</th>'
    "<th>last success</th><th>last error</th><th>nodes</th><th>task name</th></tr></thead>\n<tbody>\n"
)


def _group(snapshot: Snapshot, counts: AccountCounts, head: dict[str, Any], filters: Filters, now: float) -> str:
    """An account's group on ``/flows``: its header, then its flows on this page."""
    parts = [f'<section><h2><a href="{_e(filters.href(account=snapshot.account))}">{_e(snapshot.account)}</a></h2>',
             f'<p class="account">{" · ".join(_account_facts(head, now))}</p>']
    more = counts.matching - len(counts.shown)
    if counts.shown:
        rows = "\n".join(_row(snapshot.account, flow, now) for flow in counts.shown)
        parts.append(_TABLE_HEAD + rows + "\n</tbody></table></div>")
        if more:
            parts.append(f'<p class="more">… and {more:,} more matching flows of this account on other pages.</p>')
    else:
        parts.append(f"<p>None of its {more:,} matching flows is on this page.</p>" if more
                     else "<p>None of its flows matches.</p>")
    return "\n".join(parts) + "</section>"


def _pager(view: FlowsView) -> str:
    """"Rows 501–1,000 of 5,000 · page 2 of 10 · first · previous · next · last", with the filters."""
    filters, pages, matching = view.filters, view.pages, view.matching
    page = filters.page
    if matching <= PAGE_SIZE and page == 1:
        return ""
    first = (page - 1) * PAGE_SIZE
    shown = len(view.rows)
    links = [f"rows {first + 1:,}–{first + shown:,} of {matching:,}" if shown else f"no rows of {matching:,}",
             f"page {page:,} of {pages:,}"]
    for target, text in ((1, "first"), (page - 1, "previous"), (page + 1, "next"), (pages, "last")):
        if 1 <= target <= pages and target != page:
            links.append(f'<a href="{_e(filters.href(page=target))}">{text}</a>')
    return '<p class="pages">' + " · ".join(links) + "</p>"


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


def flow_html(flow: FlowState, now: float, account: str = "default", host: str = "") -> str:
    """The page of one flow of ``account`` (read from ``host``)."""
    row = flow_row(flow, now, account)
    detail = flow.visible_detail
    error = row["last_error"]
    facts = [
        ("account", account),
        ("host", host),
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
    flows = _e(Filters(account=account).href())
    parts = [f'<p><a href="/flows">All flows</a> · <a href="{flows}">flows of {_e(account)}</a></p>\n'
             f"<h1>Flow {flow.key_id}</h1>", _facts(facts)]
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
    return _page(f"itnio-exporter: flow {flow.key_id} of {account}", "\n".join(parts))


def _facts(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(what)}</th><td>{_e(value)}</td></tr>" for what, value in pairs)
    return f'<div class="scroll"><table>{rows}</table></div>'


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
