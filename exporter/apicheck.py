"""``--api.check``: one signed request to every endpoint the config uses, and what came back.

For a new user with real credentials: does the key work, is the clock right, what does the
API actually send? For each account, one request per endpoint and flow, sent concurrently,
with no retries and no clock correction, so that what is printed is what the API said:

- queryDetail for each configured flow (the first :data:`MAX_FLOWS` of each account);
- queryPage (the first page, with the configured filters) when discovery is on;
- one group/call/detail when node call outcomes are on, for the task of a node seen in a
  queryDetail answer;
- getBalance (at balance.path) when balance polling is on, with the three amounts decoded.

Every account is one section, headed ``account NAME (host)``: one line per request, the advice
for each failure the user can fix (-1, -2, -13, -16, -24, an unreachable host, a timeout, HTTP
errors), the clock offset read from the answers' Date headers, the TLS verification in use and
the account's verdict. The single-account form (one account, ``default``) ends there, with
``verdict:``; with ``accounts:`` an overall verdict follows, naming the accounts that failed.
The exit status is 0 when every request of every account checked succeeded, else 1.
Neither a secret nor a Sign is printed.

Accounts are isolated as in the exporter: each is checked with its own client (own connection
pool, token bucket and timeout), all at once, so an account that times out delays no other's
requests. Sections are printed in the config's order, each as soon as it and those before it
are done, written off the event loop so that a slow reader of the output holds up no request.

What the API said is shown inert (:mod:`exporter.text`): each vendor string is capped, and
every line printed has its control characters escaped visibly (``\\x1b``) and is made
writable in the output's encoding, so no answer can drive the terminal, forge a line, or
stop the verdict from being printed.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TextIO

from .accounts.runtime import build_client
from .config import AccountConfig, Config, Credentials
from .itnio.client import ItnioClient
from .itnio.endpoints import GET_BALANCE, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from .itnio.errors import ApiError, ErrorKind, NotSent
from .itnio.model import BALANCE_KINDS, Answer, Balance, CallStats, FlowDetail, FlowPage, state_name
from .metrics.telemetry import Telemetry
from .polling.discovery import list_params
from .text import encodable, inert, safe

MAX_FLOWS = 20

ADVICE = {
    "-1": "Authentication failed (-1): check api.api_key and the secret (api.api_secret_file, api.api_secret or, "
    "in the single-account form, $ITNIO_API_SECRET); they are the API key and secret of the account's API "
    "settings, and the key must belong to the host in api.base_url.",
    "-2": "This machine's IP address is not allowed (-2): add its public address to the account's IP allowlist "
    "in the vendor's console, or send the requests through an allowed proxy (api.proxy_url).",
    "-13": "The account is locked (-13): contact the vendor's support.",
    "-24": "No flow with this keyId on the account (-24): check flows[].key_id against the flows in the vendor's "
    "console (or turn discovery on to watch the flows it lists).",
    "-16": "Timestamp expired (-16): this machine's clock is too far from the API's (see the clock line below). "
    "Synchronise it with NTP; the running exporter also corrects the offset from the answers' Date header.",
    "timeout": "No answer within api.timeout: check that api.base_url is the API's address and that nothing on "
    "the way holds the request; raise api.timeout if the API is just slow.",
    "network": "The API could not be reached: check api.base_url, DNS, the firewall, and the proxy "
    "(api.proxy_url, or HTTPS_PROXY/NO_PROXY in the environment).",
    "http": "The API answered with an HTTP error: check that api.base_url is the API's base address "
    "(https://api.itniotech.com, or your white-label host with its /v3 where it has one).",
    "balance-http": "The balance path answered with an HTTP error: check balance.path (/sms/getBalance on "
    "api.itniotech.com; /v3/getBalance, or /getBalance under a /v3 base URL, on white-label hosts), or set "
    "balance.enabled: false.",
    "decode": "The answer could not be read: see the last answer on /flows/<key_id> once the exporter runs, "
    "or report it with the line above.",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    endpoint: str
    subject: str  # keyId=12, page=1, taskId=5009612
    seconds: float
    result: FlowDetail | FlowPage | CallStats | Balance | None
    error: ApiError | NotSent | None

    @property
    def answer(self) -> Answer | None:
        if self.result is not None:
            return self.result.answer
        return self.error.answer if isinstance(self.error, ApiError) else None

    @property
    def ok(self) -> bool:
        return self.error is None


async def _timed(
    endpoint: str, subject: str, call: Awaitable[FlowDetail | FlowPage | CallStats | Balance]
) -> Outcome:
    started = time.monotonic()
    try:
        result = await call
    except (ApiError, NotSent) as error:
        return Outcome(endpoint, subject, time.monotonic() - started, None, error)
    return Outcome(endpoint, subject, time.monotonic() - started, result, None)


async def run_checks(account: AccountConfig, credentials: Credentials) -> list[Outcome]:
    """Send one account's requests (see the module docstring) with a client of its own, and
    return their outcomes, in a stable order."""
    client = build_client(account.api, credentials, Telemetry().account(account.name), single_requests=True)
    try:
        return await _checks(account, client)
    finally:
        await client.close()


async def _checks(config: AccountConfig, client: ItnioClient) -> list[Outcome]:
    calls = [
        _timed(QUERY_DETAIL, f"keyId={flow.key_id}", client.query_detail(flow.key_id))
        for flow in config.flows[:MAX_FLOWS]
    ]
    if config.discovery.enabled:
        zone = config.api.zone
        params = list_params(config.discovery, zone, time.time())
        calls.append(_timed(QUERY_PAGE, "page=1", client.query_page(1, config.discovery.page_size, params, zone)))
    if config.balance.enabled:
        calls.append(_timed(GET_BALANCE, f"path={config.balance.path}", client.get_balance(config.balance.path)))
    outcomes = list(await asyncio.gather(*calls))
    if config.enrich.node_calls:
        task_id = next(
            (node.task_id for o in outcomes if isinstance(o.result, FlowDetail) for node in o.result.nodes
             if node.task_id is not None),
            None,
        )
        if task_id is not None:
            outcomes.append(await _timed(GROUP_CALL_DETAIL, f"taskId={task_id}", client.group_call_detail(task_id)))
    return outcomes


def describe(outcome: Outcome) -> str:
    """One line: endpoint, subject, HTTP status, latency, envelope, vendor code and message, decoded, drift."""
    parts = [f"{outcome.endpoint} {outcome.subject}"]
    answer = outcome.answer
    parts.append(f"HTTP {answer.http_status}" if answer is not None else "HTTP -")
    parts.append(f"{outcome.seconds * 1000:.0f} ms")
    if answer is not None and answer.envelope is not None:
        envelope = answer.envelope
        parts.append(f"envelope {envelope.form} ({envelope.code_type})")
        parts.append(f"code {envelope.code} '{safe(envelope.message)}'")
    result, error = outcome.result, outcome.error
    if isinstance(result, FlowDetail):
        parts.append(f"OK: state {state_name(result.status)}, {len(result.nodes)} nodes")
    elif isinstance(result, FlowPage):
        parts.append(f"OK: {result.total} flows listed, {len(result.records)} on this page")
    elif isinstance(result, CallStats):
        parts.append(f"OK: {result.calls if result.calls is not None else '?'} calls")
    elif isinstance(result, Balance):
        amounts = ", ".join(
            f"{kind} {_amount(result.amount(kind))}" for kind, _ in BALANCE_KINDS
        )
        parts.append(f"OK: balance {amounts} (the account's quote currency)")
    elif isinstance(error, ApiError):
        parts.append(f"FAILED: {error.kind.value}{' ' + safe(error.code, 64) if error.code else ''}: {safe(error.message)}")
    elif isinstance(error, NotSent):
        parts.append(f"NOT SENT: {safe(error.reason)}")
    drift = answer.drift if answer is not None and result is not None else ()
    parts.append("drift: " + (", ".join(f"{d.kind} {d.field}" for d in drift) if drift else "none"))
    return " | ".join(parts)


def _amount(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def clock_line(outcomes: list[Outcome]) -> str:
    offsets = []
    for outcome in outcomes:
        answer = outcome.answer
        if answer is None or not answer.date:
            continue
        try:
            server = email.utils.parsedate_to_datetime(answer.date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        offsets.append(server - answer.received)
    if not offsets:
        return "clock: no answer carried a Date header; the offset is unknown"
    offset = sorted(offsets)[len(offsets) // 2]
    side = "ahead of" if offset > 0 else "behind"
    note = " (Date has a resolution of 1 s)" if abs(offset) < 2 else ""
    return (f"clock: the API's clock is {abs(offset):.1f} s {side} this machine's{note}, "
            f"from the Date headers of {len(offsets)} answers")


def tls_line(config: AccountConfig) -> str:
    if not config.api.base_url.startswith("https://"):
        return "TLS: none (api.base_url is http://): the key and every signed request cross the network in clear"
    tls = config.api.tls
    if tls.insecure_skip_verify:
        return "TLS: NOT verified (api.tls.insecure_skip_verify: true)"
    if tls.ca_file is not None:
        return f"TLS: verified against api.tls.ca_file ({tls.ca_file})"
    return "TLS: verified against the system's CA certificates"


def section(account: AccountConfig, outcomes: list[Outcome], say: Callable[[str], None], *, last: bool) -> bool:
    """Print one account's section: its header, a line per request, the advice for each kind of
    failure seen, the clock, TLS and its verdict (``verdict:`` when it is the ``last`` word, i.e.
    the single-account form); whether every request succeeded."""
    say(f"account {account.name} ({account.api.host})")
    if len(account.flows) > MAX_FLOWS:
        say(f"checking the first {MAX_FLOWS} of {len(account.flows)} flows")
    for outcome in outcomes:
        say(describe(outcome))
    if not outcomes:
        say("no request to send: no flows configured and discovery off")
    advice = []
    for outcome in outcomes:
        error = outcome.error
        key = None
        if isinstance(error, ApiError):
            key = error.code if error.kind is ErrorKind.API and error.code in ADVICE else error.kind.value
            if outcome.endpoint == GET_BALANCE and error.kind is ErrorKind.HTTP:
                key = "balance-http"
        if key in ADVICE and ADVICE[key] not in advice:
            advice.append(ADVICE[key])
    for line in advice:
        say(line)
    say(clock_line(outcomes))
    say(tls_line(account))
    verdict = "verdict" if last else f"account {account.name} verdict"
    failed = [o for o in outcomes if not o.ok]
    if failed or not outcomes:
        say(f"{verdict}: FAILED: {len(failed)} of {len(outcomes)} requests failed")
        return False
    skipped = " (group/call/detail skipped: no node with a taskId)" if (
        account.enrich.node_calls and not any(o.endpoint == GROUP_CALL_DETAIL for o in outcomes)) else ""
    say(f"{verdict}: OK: {len(outcomes)} of {len(outcomes)} requests succeeded{skipped}")
    return True


async def api_check(
    config: Config, credentials: Mapping[str, Credentials], out: TextIO, only: Collection[str] = ()
) -> int:
    """Check every account of ``config`` (only those named in ``only``, when given: names the
    caller has checked), print a section per account in the config's order and the overall
    verdict; the exit status (0: every request of every account succeeded)."""
    accounts = [account for account in config.accounts_resolved if not only or account.name in only]
    checks = [asyncio.create_task(run_checks(account, credentials[account.name])) for account in accounts]
    encoding = getattr(out, "encoding", None)
    failed = []
    try:
        for number, (account, check) in enumerate(zip(accounts, checks, strict=True)):
            lines: list[str] = [""] if number else []
            if not section(account, await check, lines.append, last=config.single_account):
                failed.append(account.name)
            await asyncio.to_thread(_write, out, [encodable(inert(line), encoding) for line in lines])
    finally:
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
    if not config.single_account:
        if failed:
            verdict = f"verdict: FAILED: {len(failed)} of {len(accounts)} accounts failed: {', '.join(failed)}"
        else:
            verdict = f"verdict: OK: {len(accounts)} of {len(accounts)} accounts passed"
        await asyncio.to_thread(_write, out, ["", verdict])
    return 1 if failed else 0


def _write(out: TextIO, lines: list[str]) -> None:
    for line in lines:
        print(line, file=out)
    out.flush()
