"""The signed client (exporter/itnio/client.py) against the simulator: envelopes, retries, pauses,
every endpoint, and each failure kind counted once."""

import asyncio
import socket
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from exporter.config import (
    Credentials,
)
from exporter.itnio.endpoints import GET_BALANCE, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from exporter.itnio.errors import ApiError, ErrorKind, NotSent
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import ENVELOPES, Fault, Simulator, static_flows
from tests.conftest import value
from tests.helpers import counters, make_client


def error_count(telemetry, kind, code=""):
    return value(counters(telemetry), "itnio_api_errors_total", endpoint=QUERY_DETAIL, kind=kind, code=code) or 0


def request_count(telemetry):
    return value(counters(telemetry), "itnio_api_requests_total", endpoint=QUERY_DETAIL)


@pytest.mark.parametrize("variant", ENVELOPES)
async def test_every_envelope_variant_is_a_success(variant, make_sim):
    sim = await make_sim(flows=static_flows(2, 3), envelope_variant=variant)
    client, telemetry = make_client(sim.base_url)
    try:
        detail = await client.query_detail(2)
    finally:
        await client.close()
    # data.status (the flow state) is not confused with the envelope's status
    assert detail.status == 1
    assert [node.key_id for node in detail.nodes] == [2000, 2001, 2002]
    assert [node.status for node in detail.nodes] == [1, 2, 3]
    assert detail.nodes[0].task_id == 7002000 and detail.nodes[0].script_id == 100
    assert request_count(telemetry) == 1
    assert sum(v for _, v in counters(telemetry)["itnio_api_errors_total"]) == 0


async def _fail_once(sim: Simulator, **client_kwargs) -> tuple[ApiError, Telemetry]:
    client, telemetry = make_client(sim.base_url, **client_kwargs)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)
    finally:
        await client.close()
    return info.value, telemetry


@pytest.mark.parametrize(
    "fault, kind, code",
    [
        (Fault("http", 503), "http", "503"),
        (Fault("http", 500), "http", "500"),
        (Fault("api", -18), "api", "-18"),
        (Fault("decode"), "decode", ""),
        (Fault("network"), "network", ""),
    ],
)
async def test_each_injected_fault_is_counted_once_with_its_kind(fault, kind, code, make_sim):
    sim = await make_sim(flows=static_flows(1, 1), seed=3)
    sim.flow_faults[1] = fault
    for _ in range(3):  # decode alternates between invalid JSON and a wrong shape
        error, telemetry = await _fail_once(sim)
        assert (error.kind.value, error.code) == (kind, code)
        assert request_count(telemetry) == 1
        assert error_count(telemetry, kind, code) == 1
        # counted once: no other kind moved
        assert sum(v for _, v in counters(telemetry)["itnio_api_errors_total"]) == 1
    assert sim.errors() == {fault.record(): 3}


async def test_timeout_is_counted_as_timeout_within_the_deadline(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), hang_seconds=30)
    sim.flow_faults[1] = Fault("timeout")
    loop = asyncio.get_running_loop()
    started = loop.time()
    error, telemetry = await _fail_once(sim, timeout=0.3)
    assert loop.time() - started < 10  # bounded by api.timeout, not by the 30 s hang
    assert error.kind is ErrorKind.TIMEOUT
    assert error_count(telemetry, "timeout") == 1 and request_count(telemetry) == 1


async def test_connection_refused_is_a_network_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client, telemetry = make_client(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)
    finally:
        await client.close()
    assert info.value.kind is ErrorKind.NETWORK
    assert error_count(telemetry, "network") == 1


async def test_wrong_secret_is_refused_with_minus_1_and_not_retried(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    error, telemetry = await _fail_once(sim, secret="not-the-secret", retries=2)
    assert (error.kind, error.code) == (ErrorKind.API, "-1")
    assert error_count(telemetry, "api", "-1") == 1 and request_count(telemetry) == 1
    assert sim.errors() == {("api", "-1"): 1}


async def test_clock_skew_is_corrected_from_the_date_header(make_sim):
    # The vendor's clock is 10 minutes ahead and it accepts only +-60 s.
    sim = await make_sim(flows=static_flows(1, 1), timestamp_window=60, clock=lambda: time.time() + 600)
    client, telemetry = make_client(sim.base_url)
    try:
        detail = await client.query_detail(1)  # -16, corrected, signed again: success
        assert detail.status == 0
        assert sim.answers == {("api", "-16"): 1, ("ok", ""): 1}
        assert 595 <= client.clock_offset <= 605
        await client.query_detail(1)  # the next request is signed right the first time
        assert sim.answers == {("api", "-16"): 1, ("ok", ""): 2}
    finally:
        await client.close()
    samples = counters(telemetry)
    assert error_count(telemetry, "api", "-16") == 1 and request_count(telemetry) == 3
    assert value(samples, "itnio_api_retries_total", endpoint=QUERY_DETAIL) == 1
    assert 595 <= value(samples, "itnio_exporter_clock_offset_seconds") <= 605


async def test_clock_skew_is_retried_only_once(make_sim):
    # A server that always says -16 (its Date header agrees with us): one correction, then give up.
    sim = await make_sim(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("api", -16)
    error, telemetry = await _fail_once(sim, retries=2)
    assert error.code == "-16" and sim.errors() == {("api", "-16"): 2}
    assert request_count(telemetry) == 2


async def test_transport_failures_are_retried_with_backoff_then_counted_each(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("http", 502)
    error, telemetry = await _fail_once(sim, retries=2)
    assert error.code == "502"
    assert sim.errors() == {("http", "502"): 3}
    assert request_count(telemetry) == 3 and error_count(telemetry, "http", "502") == 3
    assert value(counters(telemetry), "itnio_api_retries_total", endpoint=QUERY_DETAIL) == 2
    # business errors are not retried blindly
    for code in (-18, -22, -2):
        sim.flow_faults[1] = Fault("api", code)
        error, telemetry = await _fail_once(sim, retries=2)
        assert error.code == str(code) and request_count(telemetry) == 1


async def test_a_transient_fault_is_healed_by_a_retry(make_sim):
    class FaultOnce(dict):  # the fault heals as soon as one request has met it
        def __getitem__(self, key_id):
            return self.pop(key_id)

    sim = await make_sim(flows=static_flows(1, 1))
    sim.flow_faults = FaultOnce({1: Fault("network")})
    client, telemetry = make_client(sim.base_url, retries=2)
    try:
        detail = await client.query_detail(1)
    finally:
        await client.close()
    assert detail.status == 0
    assert error_count(telemetry, "network") >= 1
    assert request_count(telemetry) == error_count(telemetry, "network") + 1


async def test_retries_never_pass_the_deadline(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), hang_seconds=30)
    sim.flow_faults[1] = Fault("timeout")
    client, telemetry = make_client(sim.base_url, timeout=0.3, retries=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1, deadline=time.monotonic() + 0.5)
    finally:
        await client.close()
    assert info.value.kind is ErrorKind.TIMEOUT
    assert loop.time() - started < 5  # 0.5 s allowed; far from the 6 x 0.3 s that unbounded retries take
    assert request_count(telemetry) == 2  # the second attempt gets what is left of the 0.5 s


async def test_429_honours_retry_after_and_pauses_every_request(make_server):
    hits = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1,
                                                      "recallType": 0, "nodeList": []}})

    port = await make_server(handler)
    client, telemetry = make_client(f"http://127.0.0.1:{port}", retries=2)
    try:
        await client.query_detail(1)
        await client.query_detail(2)
    finally:
        await client.close()
    assert len(hits) == 3 and hits[1] - hits[0] >= 0.9
    assert error_count(telemetry, "http", "429") == 1


async def test_too_frequent_pauses_and_a_pause_past_the_deadline_sends_nothing(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("api", -15)
    client, telemetry = make_client(sim.base_url, retries=2)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)  # -15 is not retried, but it pauses the client
        assert info.value.code == "-15"
        with pytest.raises(NotSent):
            await client.query_detail(1, deadline=time.monotonic() + 0.2)
    finally:
        await client.close()
    assert sim.errors() == {("api", "-15"): 1} and request_count(telemetry) == 1


async def test_unknown_flow_is_the_vendor_code_not_a_crash(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    client, telemetry = make_client(sim.base_url)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(999)
    finally:
        await client.close()
    assert (info.value.kind, info.value.code) == (ErrorKind.API, "-24")
    assert error_count(telemetry, "api", "-24") == 1


async def test_each_request_is_signed_afresh(make_server):
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers["Timestamp"], request.headers["Sign"], request.headers["Api-Key"]))
        return web.json_response({"code": 1})

    port = await make_server(handler)
    ticks = iter(range(1630468800, 1630468900))
    client, _ = make_client(f"http://127.0.0.1:{port}", secret="7bz1lzh9", clock=lambda: next(ticks))
    client.use_credentials(Credentials("bDqJFiq9", "7bz1lzh9", "test"))
    try:
        for _ in range(2):
            with pytest.raises(ApiError):
                await client.query_detail(12)
    finally:
        await client.close()
    assert seen[0] == ("1630468800", "05d7a50893e22a5c4bb3216ae3396c7c", "bDqJFiq9")
    assert seen[1][0] == "1630468801" and seen[1][1] != seen[0][1]


async def test_oversized_answer_is_a_decode_error_read_no_further(make_server):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b" " * 65536)
        return response

    port = await make_server(handler)
    client, telemetry = make_client(f"http://127.0.0.1:{port}", max_response_bytes=100_000)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)
    finally:
        await client.close()
    assert info.value.kind is ErrorKind.DECODE and "exceeds" in info.value.message
    assert error_count(telemetry, "decode") == 1


def window(sim, *, name=None):
    now = time.time()
    fmt = lambda t: datetime.fromtimestamp(t, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    params = {"strTime": fmt(now - 86400), "endTime": fmt(now + 3600)}
    if name:
        params["taskName"] = name
    return params


@pytest.mark.parametrize("variant", ENVELOPES)
async def test_the_client_pages_and_gets_call_detail_with_every_envelope(variant, make_sim):
    flows = static_flows(5, 1)
    flows[0].created = time.time() - 10 * 86400  # outside the day asked for
    flows[1].task_name = "promo-march"
    sim = await make_sim(flows=flows, envelope_variant=variant)
    client, telemetry = make_client(sim.base_url)
    try:
        first = await client.query_page(1, 3, window(sim))
        second = await client.query_page(2, 3, window(sim))
        only = await client.query_page(1, 100, window(sim, name="promo"))
        stats = await client.group_call_detail(7002000)
    finally:
        await client.close()
    assert (first.total, first.pages, len(first.records), len(second.records)) == (4, 2, 3, 1)
    assert sorted(r.key_id for r in first.records + second.records) == [2, 3, 4, 5]
    assert [r.key_id for r in only.records] == [2]
    assert {k: sim.page_requests[0][k] for k in ("current", "size")} == {"current": 1, "size": 3}
    assert stats.calls == sim.call_data(7002000)["callTotal"] and stats.acd_seconds == 42
    samples = counters(telemetry)
    assert value(samples, "itnio_api_requests_total", endpoint=QUERY_PAGE) == 3
    assert value(samples, "itnio_api_requests_total", endpoint=GROUP_CALL_DETAIL) == 1


async def test_failures_of_the_new_endpoints_are_counted_like_the_rest(make_sim):
    sim = await make_sim(flows=static_flows(2, 1))
    sim.page_faults[1] = Fault("http", 502)
    sim.task_faults[5] = Fault("api", -24)
    client, telemetry = make_client(sim.base_url)
    try:
        with pytest.raises(ApiError):
            await client.query_page(1, 10, window(sim))
        del sim.page_faults[1]
        with pytest.raises(ApiError) as info:
            await client.group_call_detail(5)
        assert info.value.code == "-24"
        with pytest.raises(ApiError) as info:
            await client.query_page(1, 10, {"strTime": "yesterday"})
        assert info.value.code == "-22"
    finally:
        await client.close()
    samples = counters(telemetry)
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_PAGE, kind="http", code="502") == 1
    assert value(samples, "itnio_api_errors_total", endpoint=QUERY_PAGE, kind="api", code="-22") == 1
    assert value(samples, "itnio_api_errors_total", endpoint=GROUP_CALL_DETAIL, kind="api", code="-24") == 1
    # the task id is in the path, never in a label
    assert all(labels["endpoint"] in ("recallFlow/queryDetail", QUERY_PAGE, GROUP_CALL_DETAIL)
               for labels, _ in samples["itnio_api_requests_total"])


def test_a_transport_error_never_shows_a_url_password():
    import aiohttp

    from exporter.itnio.client import _describe

    text = _describe(aiohttp.InvalidURL("http://proxy-user:Pr0xyPw@proxy:3128 x"))
    assert "Pr0xyPw" not in text and "***@proxy:3128" in text


async def test_the_balance_is_a_signed_get_with_no_body_at_its_own_path_counted_as_getbalance(make_server):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, dict(request.headers), await request.read()))
        return web.json_response({"status": "0", "reason": "success", "balance": "99.990000", "gift": "50.00000",
                                  "credit": "0"})

    app = web.Application()
    app.router.add_get("/v3/getBalance", handler)
    port = await make_server(app)
    # a white-label host: base_url already ends in /v3, the balance path is /getBalance
    client, telemetry = make_client(f"http://127.0.0.1:{port}/v3")
    try:
        balance = await client.get_balance("/getBalance")
    finally:
        await client.close()
    assert balance.amounts == (("actual", 99.99), ("gift", 50.0), ("credit", 0.0))
    ((method, path, headers, body),) = seen
    assert (method, path, body) == ("GET", "/v3/getBalance", b"")
    assert headers["Api-Key"] == "demo-key" and headers["Timestamp"].isdigit() and len(headers["Sign"]) == 32
    samples = counters(telemetry)
    assert value(samples, "itnio_api_requests_total", endpoint=GET_BALANCE) == 1
    assert value(samples, "itnio_api_requests_total", endpoint=QUERY_DETAIL) == 0


async def test_the_balance_at_the_simulators_default_path_and_its_failures(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), balance=12.25, gift=0.5, credit=3)
    client, telemetry = make_client(sim.base_url)
    try:
        balance = await client.get_balance()  # /sms/getBalance
        assert dict(balance.amounts) == {"actual": 12.25, "gift": 0.5, "credit": 3.0}
        assert balance.answer is not None and balance.answer.http_status == 200
        sim.balance_fault = Fault("api", -13)
        with pytest.raises(ApiError) as info:
            await client.get_balance()
        assert info.value.code == "-13" and info.value.is_account_error()
        sim.balance_fault = Fault("http", 503)
        with pytest.raises(ApiError) as info:
            await client.get_balance()
        assert (info.value.kind, info.value.code) == (ErrorKind.HTTP, "503")
    finally:
        await client.close()
    samples = counters(telemetry)
    assert value(samples, "itnio_api_requests_total", endpoint=GET_BALANCE) == 3
    assert value(samples, "itnio_api_errors_total", endpoint=GET_BALANCE, kind="api", code="-13") == 1
    assert sim.balance_answers == {("ok", ""): 1, ("api", "-13"): 1, ("http", "503"): 1}
    assert not sim.answers, "balance answers are the simulator's ground truth apart from the flows'"


async def test_a_large_answer_is_decoded_in_a_worker_thread_and_a_small_one_on_the_loop(make_sim, monkeypatch):
    import threading

    from exporter.itnio import client as client_module

    sim = await make_sim(flows=static_flows(2, 3))
    threads = []
    parse = client_module.parse_flow_detail

    def recording(body, reader):
        threads.append(threading.current_thread() is threading.main_thread())
        return parse(body, reader)

    monkeypatch.setattr(client_module, "parse_flow_detail", recording)
    client, _ = make_client(sim.base_url)
    try:
        small = await client.query_detail(2)
        monkeypatch.setattr(client_module, "OFFLOAD_DECODE_BYTES", 0)  # every answer is "large" now
        large = await client.query_detail(2)
    finally:
        await client.close()
    assert threads == [True, False]  # on the loop's thread, then off it
    assert large == small and large.answer is not None and large.answer.envelope is not None
