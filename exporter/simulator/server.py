"""A fake ITNIO voice API for the tests, the demo and the benchmarks.

It checks ``Api-Key``, ``Timestamp`` and ``Sign`` as the vendor documents (wrong
key or sign -> -1, timestamp outside the window -> -16, bad body -> -22, unknown
keyId -> -24), answers with every documented envelope variant, and can add latency
and inject faults (timeouts, 5xx, dropped connections, invalid JSON, vendor codes)
at set rates or for chosen flows. Every answer is recorded in :attr:`Simulator.answers`
as ``(kind, code)``, with the exporter's error kinds, so tests compare the
exporter's counters against the truth.

It also serves the account balance (``GET /sms/getBalance`` and ``/v3/getBalance``, plus
``balance_path``), flat and with the amounts as strings as documented. Its flows spend it:
every in-progress node places ``call_rate`` calls a second at ``call_cost`` each, charged to
the actual balance, then the gift. Balance answers are recorded apart, in
:attr:`Simulator.balance_answers`, with the amounts served in :attr:`Simulator.balances_served`.

Hostile answers (:meth:`Simulator.serve_hostile`): every queryDetail answer a large body
that is not JSON (``junk``), or a gzip bomb (``gzip_bomb``: a small gzip body that inflates
to far more), as a broken or compromised endpoint or proxy would send them.

Run it alone with ``itnio-exporter-simulator`` or ``python -m exporter.simulator``
(:mod:`exporter.simulator.cli`); the flows it serves are in :mod:`exporter.simulator.flows`.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hmac
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..itnio.endpoints import DEFAULT_BALANCE_PATH, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from ..itnio.endpoints import path as endpoint_path
from ..itnio.model import VENDOR_TIME_FORMAT
from ..itnio.signing import sign

QUERY_DETAIL_PATH = endpoint_path(QUERY_DETAIL)
QUERY_PAGE_PATH = endpoint_path(QUERY_PAGE)
GROUP_CALL_DETAIL_PATH = endpoint_path(GROUP_CALL_DETAIL) + "/{task_id}"
BALANCE_PATHS = (DEFAULT_BALANCE_PATH, "/v3/getBalance")  # api.itniotech.com and the white-labels
ENVELOPES = ("code-int", "code-str", "status-str", "status-int")
FAULT_KINDS = ("timeout", "http", "network", "decode", "api")
# Scripted drift in queryDetail answers (Simulator.flow_drift): what a real API may send that the docs do not say.
DRIFT_VARIANTS = ("string_numbers", "unreadable_node", "missing_optional", "unreadable_numbers")
_FLOW_NUMBERS = ("keyId", "status", "recallInterval", "recallNum", "recallType")
_NODE_NUMBERS = ("keyId", "nodeStatus", "taskId", "scriptId")
DEMO_API_KEY = "demo-key"
HOSTILE_KINDS = ("junk", "gzip_bomb")
# How an answer is to be counted (kind, code), and the answer; None: drop the connection.
Decision = tuple[tuple[str, str], "web.StreamResponse | None"]
DEMO_API_SECRET = "demo-secret"


def envelope(variant: str, code: int, message: str, data: Any = None) -> dict[str, Any]:
    if variant == "code-int":
        body: dict[str, Any] = {"code": code, "msg": message}
    elif variant == "code-str":
        body = {"code": str(code), "msg": message}
    elif variant == "status-str":
        body = {"status": str(code), "reason": message}
    else:
        body = {"status": code, "reason": message}
    if data is not None:
        body["data"] = data
    return body


def drifted(data: dict[str, Any], variants: set[str] | frozenset[str]) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """``data`` of a queryDetail answer changed by the drift ``variants``, and the (field, kind) drift
    the exporter must count for it: the simulator's ground truth."""
    data = dict(data)
    nodes = [dict(node) for node in data.get("nodeList") or []]
    truth: set[tuple[str, str]] = set()
    if "string_numbers" in variants:
        for key in _FLOW_NUMBERS:
            if isinstance(data.get(key), int):
                data[key] = f" {data[key]} "
                truth.add((f"data.{key}", "string_number"))
        for node in nodes:
            for key in _NODE_NUMBERS:
                if isinstance(node.get(key), int):
                    node[key] = str(node[key])
                    truth.add((f"data.nodeList.{key}", "string_number"))
    if "missing_optional" in variants:
        for node in nodes:
            for key in ("taskId", "scriptId"):
                node.pop(key, None)
                truth.add((f"data.nodeList.{key}", "missing"))
    elif any(node.get(key) is None for node in nodes for key in ("taskId", "scriptId")):
        truth.update((f"data.nodeList.{key}", "missing") for key in ("taskId", "scriptId")
                     if any(node.get(key) is None for node in nodes))
    if "unreadable_numbers" in variants:  # a negative count, and a count in full-width digits
        data["recallNum"], data["recallInterval"] = -5, "\uff15"
        truth.update({("data.recallNum", "unreadable"), ("data.recallInterval", "unreadable")})
    if "unreadable_node" in variants:
        nodes.append({"keyId": "node-without-a-number", "nodeStatus": 1})
        truth.add(("data.nodeList.keyId", "unreadable_node"))
    data["nodeList"] = nodes
    return data, truth


@dataclass
class Fault:
    """One injected fault: ``kind`` in FAULT_KINDS; ``code`` is the vendor code (api) or HTTP status;
    ``message`` the envelope's msg of an api fault (any text: a test of hostile vendor text sets it)."""

    kind: str
    code: int | None = None
    message: str = "Injected fault"

    def record(self) -> tuple[str, str]:
        if self.kind in ("http", "api"):
            return self.kind, str(self.code)
        return self.kind, ""


class Simulator:
    def __init__(
        self,
        *,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        flows: list[Any] | None = None,
        latency: float = 0.0,
        fault_rates: dict[str, float] | None = None,
        api_fault_codes: tuple[int, ...] = (-18,),
        http_fault_statuses: tuple[int, ...] = (503,),
        retry_after: str | None = None,
        hang_seconds: float = 30.0,
        envelope_variant: str = "mixed",
        timestamp_window: float = 1800.0,
        seed: int | None = 0,
        clock: Callable[[], float] = time.time,
        timezone: str = "UTC",
        balance: float = 100.0,
        gift: float = 50.0,
        credit: float = 0.0,
        call_cost: float = 0.0,
        call_rate: float = 1.0,
        balance_path: str | None = None,
        top_up_to: float | None = None,
    ):
        self.api_key = api_key
        self.api_secret = api_secret
        self.flows: dict[int, Any] = {flow.key_id: flow for flow in (flows or [])}
        self.latency = latency
        self.fault_rates = dict(fault_rates or {})
        self.api_fault_codes = api_fault_codes  # codes injected at fault_rates["api"]
        self.http_fault_statuses = http_fault_statuses  # statuses injected at fault_rates["http"]
        self.retry_after = retry_after  # Retry-After header on injected 429s
        self.signs_seen: set[str] = set()  # every Sign header received, for leak tests
        self.hang_seconds = hang_seconds
        self.envelope_variant = envelope_variant
        self.timestamp_window = timestamp_window
        self.clock = clock
        self.random = random.Random(seed)
        self.flow_faults: dict[int, Fault] = {}  # key_id -> fault to inject on every request for it
        self.flow_latency: dict[int, float] = {}  # key_id -> extra latency
        self.flow_drift: dict[int, set[str]] = {}  # key_id -> DRIFT_VARIANTS its queryDetail answers carry
        self.drift_served: Counter[tuple[str, str]] = Counter()  # (field, kind) of drift in successful detail answers
        self.flow_message: dict[int, str] = {}  # key_id -> msg of its successful queryDetail answers ("success")
        self.answers: Counter[tuple[str, str]] = Counter()  # (kind, code) of every answer, "ok" for success
        self.requests_per_flow: Counter[int] = Counter()
        self.started = time.monotonic()
        self.started_wall = clock()
        self.timezone = timezone  # of createTime and the strTime/endTime filters
        self.page_faults: dict[int, Fault] = {}  # queryPage page number -> fault
        self.task_faults: dict[int, Fault] = {}  # group-call taskId -> fault
        self.call_stats: dict[int, dict[str, Any]] = {}  # taskId -> data of group/call/detail (else made up)
        self.requests_per_task: Counter[int] = Counter()
        self.page_requests: list[dict[str, Any]] = []  # the bodies of queryPage requests, in order
        # Records per queryPage page whatever size was asked, as a vendor that ignores size would send.
        self.page_overfill: int | None = None
        # Called with the page number after each queryPage page is computed, before it is sent:
        # a test can create or delete flows there, as happens between two page reads on a live account.
        self.after_page: Callable[[int], None] | None = None
        # The account: amounts as getBalance reports them, spent by the flows' calls.
        self.amounts = {"balance": balance, "gift": gift, "credit": credit}
        self.call_cost = call_cost  # per call placed
        self.call_rate = call_rate  # calls a second per in-progress node
        self._charged_until = time.monotonic()
        self.balance_paths = BALANCE_PATHS + ((balance_path,) if balance_path and balance_path not in BALANCE_PATHS else ())
        self.top_up_to = top_up_to  # once the account is spent, the actual balance is topped up to this
        self.balance_fault: Fault | None = None  # injected on every balance request while set
        self.balance_as_numbers = False  # amounts as JSON numbers instead of the documented strings
        self.balance_answers: Counter[tuple[str, str]] = Counter()  # (kind, code) of every balance answer
        self.balances_served: list[dict[str, float]] = []  # the amounts of each successful balance answer
        self.hostile: tuple[bytes, dict[str, str]] | None = None  # body and headers of every queryDetail answer
        self.detail_size = 0  # successful queryDetail answers are padded with whitespace to this many bytes
        self._served = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def serve_hostile(self, kind: str | None, size: int = 7 * 1024 * 1024) -> None:
        """From now on answer every authentic queryDetail with ``kind`` of ``size`` bytes (inflated,
        for a gzip bomb), recorded as ``decode``; None: answer normally again."""
        if kind is None:
            self.hostile = None
        elif kind == "junk":  # an HTML error page from a proxy, say: 200 OK, not JSON
            line = b"<p>upstream said something that is not JSON</p>\n"
            self.hostile = (line * (size // len(line) + 1))[:size], {"Content-Type": "text/html"}
        elif kind == "gzip_bomb":
            self.hostile = gzip.compress(b"\0" * size, 9), {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        else:
            raise ValueError(f"unknown hostile kind {kind!r} (one of {', '.join(HOSTILE_KINDS)})")

    # -- set-up -------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(QUERY_DETAIL_PATH, self._query_detail)
        app.router.add_post(QUERY_PAGE_PATH, self._query_page)
        app.router.add_get(GROUP_CALL_DETAIL_PATH, self._group_call_detail)
        for path in self.balance_paths:
            app.router.add_get(path, self._get_balance)
        app.on_response_prepare.append(self._date_header)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        # The Date header follows the simulator's clock, skewed or not, as a real server's would.
        response.headers["Date"] = email.utils.formatdate(self.clock(), usegmt=True)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- serving ------------------------------------------------------------------------------
    def _variant(self) -> str:
        if self.envelope_variant != "mixed":
            return self.envelope_variant
        self._served += 1
        return ENVELOPES[self._served % len(ENVELOPES)]

    def _answer(self, code: int, message: str, data: Any = None) -> tuple[tuple[str, str], web.Response]:
        """A vendor answer and how the exporter must count it."""
        record = ("ok", "") if code == 0 else ("api", str(code))
        return record, web.json_response(envelope(self._variant(), code, message, data))

    def _check_auth(self, request: web.Request) -> tuple[int, str] | None:
        key = request.headers.get("Api-Key", "")
        stamp = request.headers.get("Timestamp", "")
        given = request.headers.get("Sign", "").lower()
        if not key or not stamp or not given:
            return -1, "Authentication error"
        if not hmac.compare_digest(key, self.api_key):
            return -1, "Authentication error"
        if not hmac.compare_digest(given, sign(self.api_key, self.api_secret, stamp)):
            return -1, "Authentication error"
        try:
            stamp_value = int(stamp)
        except ValueError:
            return -16, "Timestamp expired"
        if abs(self.clock() - stamp_value) > self.timestamp_window:
            return -16, "Timestamp expired"
        return None

    def _pick_fault(self, key_id: int | None) -> Fault | None:
        if key_id is not None and key_id in self.flow_faults:
            return self.flow_faults[key_id]
        for kind in FAULT_KINDS:
            rate = self.fault_rates.get(kind, 0.0)
            if rate and self.random.random() < rate:
                if kind == "api":
                    return Fault(kind, self.random.choice(self.api_fault_codes))
                if kind == "http":
                    return Fault(kind, self.random.choice(self.http_fault_statuses))
                return Fault(kind)
        return None

    async def _query_detail(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._decide_detail)

    async def _query_page(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._decide_page)

    async def _group_call_detail(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._decide_call_detail)

    async def _get_balance(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._decide_balance, self.balance_answers)

    async def _serve(
        self, request: web.Request, decide: Callable[[web.Request], Any], answers: Counter[tuple[str, str]] | None = None
    ) -> web.StreamResponse:
        """Answer, then record the answer once it is written: a request the client gave up on
        before that (its timeout) is recorded as the timeout it saw."""
        record: tuple[str, str] | None = None
        self.signs_seen.add(request.headers.get("Sign", ""))
        try:
            record, response = await decide(request)
            if response is None:  # a dropped connection: nothing more is written
                raise asyncio.CancelledError
            await response.prepare(request)
            await response.write_eof()
            return response
        except asyncio.CancelledError:
            if record is None or record[0] != "network":
                record = ("timeout", "")
            raise
        finally:
            (self.answers if answers is None else answers)[record or ("timeout", "")] += 1

    async def _decide_detail(self, request: web.Request) -> Decision:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        key_id = body.get("keyId") if isinstance(body, dict) else None
        if isinstance(key_id, bool) or not isinstance(key_id, int):
            key_id = None
        delay = self.latency + self.flow_latency.get(key_id, 0.0) if key_id is not None else self.latency
        faulted = await self._fault_or_delay(request, self._pick_fault(key_id), delay)
        if faulted is not None:
            return faulted
        problem = self._check_auth(request)
        if problem is not None:
            return self._answer(*problem)
        if key_id is None:
            return self._answer(-22, "Parameter exception")
        if self.hostile is not None:
            body, headers = self.hostile
            return ("decode", ""), web.Response(body=body, headers=headers)
        flow = self.flows.get(key_id)
        if flow is None:
            return self._answer(-24, "Data not existing")
        self.requests_per_flow[key_id] += 1
        data = flow.data(time.monotonic() - self.started)
        variants = self.flow_drift.get(key_id)
        if variants:
            data, truth = drifted(data, variants)
            self.drift_served.update(truth)
        message = self.flow_message.get(key_id, "success")
        if self.detail_size:  # valid JSON as large as a hostile answer, to compare the two
            body = json.dumps(envelope(self._variant(), 0, message, data)).encode().ljust(self.detail_size)
            return ("ok", ""), web.Response(body=body, content_type="application/json")
        return self._answer(0, message, data)

    async def _fault_or_delay(self, request: web.Request, fault: Fault | None, delay: float) -> Decision | None:
        """Wait ``delay``, then answer with ``fault`` if there is one (None: answer normally)."""
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(self.hang_seconds)  # the client gives up first: recorded as timeout
            return ("timeout", ""), web.Response(status=504)
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            return None
        record = fault.record()
        if fault.kind == "http":
            headers = {"Retry-After": self.retry_after} if fault.code == 429 and self.retry_after else {}
            return record, web.Response(status=fault.code or 503, text="upstream unavailable", headers=headers)
        if fault.kind == "network":
            assert request.transport is not None
            request.transport.abort()
            return record, None
        if fault.kind == "decode":
            if self.random.random() < 0.5:
                truncated = b'{"code":0,"msg":"success","data":{"keyId":'
                return record, web.Response(body=truncated, content_type="application/json")
            return record, web.json_response(envelope(self._variant(), 0, "success", [1, 2, 3]))
        return record, web.json_response(envelope(self._variant(), fault.code or -18, fault.message))

    def vendor_time(self, unix: float) -> str:
        return datetime.fromtimestamp(unix, ZoneInfo(self.timezone)).strftime(VENDOR_TIME_FORMAT)

    def record(self, flow: Any) -> dict[str, Any]:
        """The queryPage record of a flow (any flow class: missing list fields get defaults)."""
        created = getattr(flow, "created", None) or self.started_wall
        task_id = getattr(flow, "task_id", None)
        name = getattr(flow, "task_name", None)
        return {
            "keyId": flow.key_id,
            "taskId": task_id if task_id is not None else 9000000 + flow.key_id,
            "taskName": name if name is not None else f"task-{flow.key_id}",
            "createTime": self.vendor_time(created),
            "recallType": getattr(flow, "recall_type", 1),
            "recallInterval": getattr(flow, "recall_interval", 1),
            "recallNum": getattr(flow, "recall_num", getattr(flow, "rounds", 1)),
            "finishNum": getattr(flow, "finish_num", 0),
            "status": flow.data(time.monotonic() - self.started)["status"],
            "_created": created,
        }

    async def _decide_page(self, request: web.Request) -> Decision:
        """The flow list: newest first, filtered by createTime and taskName, paged by current/size."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        self.page_requests.append(body if isinstance(body, dict) else {})
        current = body.get("current") if isinstance(body, dict) else None
        faulted = await self._fault_or_delay(
            request, self.page_faults.get(current) if isinstance(current, int) else self._pick_fault(None), self.latency
        )
        if faulted is not None:
            return faulted
        problem = self._check_auth(request)
        if problem is not None:
            return self._answer(*problem)
        size = body.get("size") if isinstance(body, dict) else None
        params = body.get("params") if isinstance(body, dict) else None
        if (
            not isinstance(current, int) or isinstance(current, bool) or current < 1
            or not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100
            or not isinstance(params, dict)
        ):
            return self._answer(-22, "Parameter exception")
        try:
            zone = ZoneInfo(self.timezone)
            since = datetime.strptime(params["strTime"], VENDOR_TIME_FORMAT).replace(tzinfo=zone).timestamp()
            until = datetime.strptime(params["endTime"], VENDOR_TIME_FORMAT).replace(tzinfo=zone).timestamp()
        except (KeyError, TypeError, ValueError):
            return self._answer(-22, "Parameter exception")
        name = params.get("taskName")
        records = [self.record(flow) for flow in self.flows.values()]
        records = [
            r for r in records
            if since <= int(r["_created"]) <= until and (not name or str(name) in r["taskName"])
        ]
        records.sort(key=lambda r: (-r["_created"], -r["keyId"]))
        for record in records:
            del record["_created"]
        loose = self._served % 2 == 1  # every other answer carries numbers as strings, as the vendor may
        size = self.page_overfill or size
        page = [
            {k: (str(v) if loose and isinstance(v, int) and k != "status" else v) for k, v in r.items()}
            for r in records[(current - 1) * size : current * size]
        ]
        data = {
            "records": page,
            "total": len(records),
            "size": size,
            "current": current,
            "pages": -(-len(records) // size),
            "searchCount": True,
        }
        if self.after_page is not None:
            self.after_page(current)
        return self._answer(0, "success", data)

    def call_data(self, task_id: int) -> dict[str, Any]:
        """group/call/detail of a task: set by a test in :attr:`call_stats`, else made up from the id."""
        if task_id in self.call_stats:
            return self.call_stats[task_id]
        numbers = 20 + task_id % 30
        calls = numbers + task_id % 7
        success = calls * 2 // 3
        return {
            "taskId": task_id,
            "numCnt": numbers,
            "callTotal": calls,
            "success": success,
            "fail": calls - success,
            "successRate": f"{100 * success / calls:.2f}%",
            "callDuration": success * 42,
            "acd": 42,
            "callLossNum": calls - success,
            "status": 2,
            "finishTime": self.vendor_time(self.started_wall),
        }

    async def _decide_call_detail(self, request: web.Request) -> Decision:
        try:
            task_id: int | None = int(request.match_info["task_id"])
        except ValueError:
            task_id = None
        fault = self.task_faults.get(task_id) if task_id is not None else None
        faulted = await self._fault_or_delay(request, fault or self._pick_fault(None), self.latency)
        if faulted is not None:
            return faulted
        problem = self._check_auth(request)
        if problem is not None:
            return self._answer(*problem)
        if task_id is None:
            return self._answer(-22, "Parameter exception")
        self.requests_per_task[task_id] += 1
        data = dict(self.call_data(task_id))
        if self._served % 2 == 1:  # the vendor is loose: numbers as strings now and then
            data = {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in data.items()}
        return self._answer(0, "success", data)

    # -- the account balance ---------------------------------------------------------------------
    def place_calls(self, calls: float) -> None:
        """Charge ``calls`` calls at call_cost: from the actual balance first, then the gift."""
        cost = calls * self.call_cost
        for key in ("balance", "gift"):
            spent = min(cost, max(self.amounts[key], 0.0))
            self.amounts[key] -= spent
            cost -= spent
        if self.top_up_to is not None and self.amounts["balance"] + self.amounts["gift"] <= 0:
            self.amounts["balance"] = self.top_up_to

    def _charge(self) -> None:
        """The calls the flows' in-progress nodes placed since the last charge (call_rate a second each)."""
        now = time.monotonic()
        seconds, self._charged_until = now - self._charged_until, now
        if not self.call_cost or seconds <= 0:
            return
        elapsed = now - self.started
        running = sum(
            1 for flow in self.flows.values() for node in flow.data(elapsed).get("nodeList") or ()
            if node.get("nodeStatus") == 1
        )
        self.place_calls(running * self.call_rate * seconds)

    def available(self) -> float:
        return sum(self.amounts.values())

    async def _decide_balance(self, request: web.Request) -> Decision:
        faulted = await self._fault_or_delay(request, self.balance_fault, self.latency)
        if faulted is not None:
            return faulted
        problem = self._check_auth(request)
        if problem is not None:  # the balance page documents status/reason only
            code, message = problem
            return ("api", str(code)), web.json_response(envelope("status-str", code, message))
        self._charge()
        amounts = {key: round(value, 6) for key, value in self.amounts.items()}
        self.balances_served.append(amounts)
        # Flat, every field a string, as documented (balance_as_numbers: a looser vendor).
        body: dict[str, Any] = {"status": "0", "reason": "success"}
        body.update({key: value if self.balance_as_numbers else f"{value:.6f}" for key, value in amounts.items()})
        return ("ok", ""), web.json_response(body)

    def errors(self) -> Counter[tuple[str, str]]:
        """The answers that were failures, as the exporter should count them."""
        return Counter({k: v for k, v in self.answers.items() if k[0] != "ok"})
