"""The signed client against the simulator: envelopes, and each failure kind counted once."""

import asyncio
import socket
import time

import pytest
from aiohttp import web

from exporter.config import Credentials
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, ENVELOPES, Fault, Simulator, static_flows
from exporter.vendor.client import ItnioClient
from exporter.vendor.decoding import parse_flow_detail
from exporter.vendor.endpoints import QUERY_DETAIL
from exporter.vendor.errors import ApiError, ErrorKind, NotSent
from tests.conftest import parse_samples, serve, value


def make_client(base_url: str, *, secret: str = DEMO_API_SECRET, timeout: float = 2.0, clock=None, retries=0, **kwargs):
    """A client with no retries unless asked, so that one call is one request."""
    telemetry = Telemetry()
    extra = {"clock": clock} if clock else {}
    client = ItnioClient(
        base_url,
        Credentials(DEMO_API_KEY, secret, "test"),
        timeout=timeout,
        max_connections=4,
        max_response_bytes=kwargs.get("max_response_bytes", 1 << 20),
        telemetry=telemetry,
        retries=retries,
        **extra,
    )
    return client, telemetry


def counters(telemetry: Telemetry):
    from prometheus_client import generate_latest

    return parse_samples(generate_latest(telemetry.registry).decode())


def error_count(telemetry, kind, code=""):
    return value(counters(telemetry), "itnio_api_errors_total", endpoint=QUERY_DETAIL, kind=kind, code=code) or 0


def request_count(telemetry):
    return value(counters(telemetry), "itnio_api_requests_total", endpoint=QUERY_DETAIL)


@pytest.mark.parametrize("variant", ENVELOPES)
async def test_every_envelope_variant_is_a_success(variant):
    sim = Simulator(flows=static_flows(2, 3), envelope_variant=variant)
    await sim.start()
    client, telemetry = make_client(sim.base_url)
    try:
        detail = await client.query_detail(2)
    finally:
        await client.close()
        await sim.stop()
    # data.status (the flow state) is not confused with the envelope's status
    assert detail.status == 1
    assert [node.key_id for node in detail.nodes] == [2000, 2001, 2002]
    assert [node.status for node in detail.nodes] == [1, 2, 3]
    assert detail.nodes[0].task_id == 7002000 and detail.nodes[0].script_id == 100
    assert request_count(telemetry) == 1
    assert sum(v for _, v in counters(telemetry)["itnio_api_errors_total"]) == 0


@pytest.mark.parametrize(
    "body, code",
    [
        ({"code": -16, "msg": "Timestamp expired"}, "-16"),
        ({"code": "-1", "msg": "Authentication error"}, "-1"),
        ({"status": "-2", "reason": "Restricted IP access"}, "-2"),
        ({"status": -22, "reason": "Parameter exception"}, "-22"),
        ({"status": "-24", "reason": "x", "data": {"status": 0}}, "-24"),
    ],
)
def test_non_zero_codes_in_every_variant_are_api_errors(body, code):
    with pytest.raises(ApiError) as info:
        parse_flow_detail(body)
    assert (info.value.kind, info.value.code) == (ErrorKind.API, code)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"msg": "no code"},
        {"code": "zero"},
        {"code": True},
        {"code": 0},
        {"code": 0, "data": []},
        {"code": 0, "data": {"status": "1", "recallInterval": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"status": 1.5, "recallInterval": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"status": 1, "recallNum": 1, "recallType": 0}},
        {"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0, "nodeList": {}}},
        {"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0, "nodeList": [3]}},
        {"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0,
                             "nodeList": [{"keyId": 1, "nodeStatus": None}]}},
        {"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1, "recallType": 0,
                             "nodeList": [{"keyId": 1, "nodeStatus": 1}, {"keyId": 1, "nodeStatus": 2}]}},
    ],
)
def test_wrong_shapes_are_decode_errors(body):
    with pytest.raises(ApiError) as info:
        parse_flow_detail(body)
    assert info.value.kind is ErrorKind.DECODE


def test_optional_ids_may_be_null_and_nodelist_absent():
    detail = parse_flow_detail(
        {"code": "0", "data": {"status": 2, "recallInterval": 3, "recallNum": 2, "recallType": 0,
                               "nodeList": [{"keyId": 5, "taskId": None, "nodeStatus": 2, "scriptId": None}]}}
    )
    assert detail.nodes[0].task_id is None and detail.recall_type_name == "all"
    assert parse_flow_detail({"code": 0, "data": {"status": 0, "recallInterval": 1, "recallNum": 1,
                                                  "recallType": 1}}).nodes == ()


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
async def test_each_injected_fault_is_counted_once_with_its_kind(fault, kind, code):
    sim = Simulator(flows=static_flows(1, 1), seed=3)
    sim.flow_faults[1] = fault
    await sim.start()
    try:
        for _ in range(3):  # decode alternates between invalid JSON and a wrong shape
            error, telemetry = await _fail_once(sim)
            assert (error.kind.value, error.code) == (kind, code)
            assert request_count(telemetry) == 1
            assert error_count(telemetry, kind, code) == 1
            # counted once: no other kind moved
            assert sum(v for _, v in counters(telemetry)["itnio_api_errors_total"]) == 1
    finally:
        await sim.stop()
    assert sim.errors() == {fault.record(): 3}


async def test_timeout_is_counted_as_timeout_within_the_deadline():
    sim = Simulator(flows=static_flows(1, 1), hang_seconds=30)
    sim.flow_faults[1] = Fault("timeout")
    await sim.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        error, telemetry = await _fail_once(sim, timeout=0.3)
        assert loop.time() - started < 10  # bounded by api.timeout, not by the 30 s hang
    finally:
        await sim.stop()
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


async def test_wrong_secret_is_refused_with_minus_1_and_not_retried():
    sim = Simulator(flows=static_flows(1, 1))
    await sim.start()
    try:
        error, telemetry = await _fail_once(sim, secret="not-the-secret", retries=2)
    finally:
        await sim.stop()
    assert (error.kind, error.code) == (ErrorKind.API, "-1")
    assert error_count(telemetry, "api", "-1") == 1 and request_count(telemetry) == 1
    assert sim.errors() == {("api", "-1"): 1}


async def test_clock_skew_is_corrected_from_the_date_header():
    # The vendor's clock is 10 minutes ahead and it accepts only +-60 s.
    sim = Simulator(flows=static_flows(1, 1), timestamp_window=60, clock=lambda: time.time() + 600)
    await sim.start()
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
        await sim.stop()
    samples = counters(telemetry)
    assert error_count(telemetry, "api", "-16") == 1 and request_count(telemetry) == 3
    assert value(samples, "itnio_api_retries_total", endpoint=QUERY_DETAIL) == 1
    assert 595 <= value(samples, "itnio_exporter_clock_offset_seconds") <= 605


async def test_clock_skew_is_retried_only_once():
    # A server that always says -16 (its Date header agrees with us): one correction, then give up.
    sim = Simulator(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("api", -16)
    await sim.start()
    try:
        error, telemetry = await _fail_once(sim, retries=2)
    finally:
        await sim.stop()
    assert error.code == "-16" and sim.errors() == {("api", "-16"): 2}
    assert request_count(telemetry) == 2


async def test_transport_failures_are_retried_with_backoff_then_counted_each():
    sim = Simulator(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("http", 502)
    await sim.start()
    try:
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
    finally:
        await sim.stop()


async def test_a_transient_fault_is_healed_by_a_retry():
    sim = Simulator(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("network")
    await sim.start()
    client, telemetry = make_client(sim.base_url, retries=2)
    try:
        async def heal():
            while not sim.errors():
                await asyncio.sleep(0.001)
            del sim.flow_faults[1]

        healer = asyncio.create_task(heal())
        detail = await client.query_detail(1)
        await healer
    finally:
        await client.close()
        await sim.stop()
    assert detail.status == 0
    assert error_count(telemetry, "network") >= 1
    assert request_count(telemetry) == error_count(telemetry, "network") + 1


async def test_retries_never_pass_the_deadline():
    sim = Simulator(flows=static_flows(1, 1), hang_seconds=30)
    sim.flow_faults[1] = Fault("timeout")
    await sim.start()
    client, telemetry = make_client(sim.base_url, timeout=0.3, retries=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1, deadline=time.monotonic() + 0.5)
    finally:
        await client.close()
        await sim.stop()
    assert info.value.kind is ErrorKind.TIMEOUT
    assert loop.time() - started < 5  # 0.5 s allowed; far from the 6 x 0.3 s that unbounded retries take
    assert request_count(telemetry) == 2  # the second attempt gets what is left of the 0.5 s


async def test_429_honours_retry_after_and_pauses_every_request():
    hits = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"code": 0, "data": {"status": 1, "recallInterval": 1, "recallNum": 1,
                                                      "recallType": 0, "nodeList": []}})

    runner, port = await serve(handler)
    client, telemetry = make_client(f"http://127.0.0.1:{port}", retries=2)
    try:
        await client.query_detail(1)
        await client.query_detail(2)
    finally:
        await client.close()
        await runner.cleanup()
    assert len(hits) == 3 and hits[1] - hits[0] >= 0.9
    assert error_count(telemetry, "http", "429") == 1


async def test_too_frequent_pauses_and_a_pause_past_the_deadline_sends_nothing():
    sim = Simulator(flows=static_flows(1, 1))
    sim.flow_faults[1] = Fault("api", -15)
    await sim.start()
    client, telemetry = make_client(sim.base_url, retries=2)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)  # -15 is not retried, but it pauses the client
        assert info.value.code == "-15"
        with pytest.raises(NotSent):
            await client.query_detail(1, deadline=time.monotonic() + 0.2)
    finally:
        await client.close()
        await sim.stop()
    assert sim.errors() == {("api", "-15"): 1} and request_count(telemetry) == 1


async def test_unknown_flow_is_the_vendor_code_not_a_crash():
    sim = Simulator(flows=static_flows(1, 1))
    await sim.start()
    client, telemetry = make_client(sim.base_url)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(999)
    finally:
        await client.close()
        await sim.stop()
    assert (info.value.kind, info.value.code) == (ErrorKind.API, "-24")
    assert error_count(telemetry, "api", "-24") == 1


async def test_each_request_is_signed_afresh():
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers["Timestamp"], request.headers["Sign"], request.headers["Api-Key"]))
        return web.json_response({"code": 1})

    runner, port = await serve(handler)
    ticks = iter(range(1630468800, 1630468900))
    client, _ = make_client(f"http://127.0.0.1:{port}", secret="7bz1lzh9", clock=lambda: next(ticks))
    client.credentials = Credentials("bDqJFiq9", "7bz1lzh9", "test")
    try:
        for _ in range(2):
            with pytest.raises(ApiError):
                await client.query_detail(12)
    finally:
        await client.close()
        await runner.cleanup()
    assert seen[0] == ("1630468800", "05d7a50893e22a5c4bb3216ae3396c7c", "bDqJFiq9")
    assert seen[1][0] == "1630468801" and seen[1][1] != seen[0][1]


async def test_oversized_answer_is_a_decode_error_read_no_further():
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b" " * 65536)
        return response

    runner, port = await serve(handler)
    client, telemetry = make_client(f"http://127.0.0.1:{port}", max_response_bytes=100_000)
    try:
        with pytest.raises(ApiError) as info:
            await client.query_detail(1)
    finally:
        await client.close()
        await runner.cleanup()
    assert info.value.kind is ErrorKind.DECODE and "exceeds" in info.value.message
    assert error_count(telemetry, "decode") == 1


def test_a_transport_error_never_shows_a_url_password():
    import aiohttp

    from exporter.vendor.client import _describe

    text = _describe(aiohttp.InvalidURL("http://proxy-user:Pr0xyPw@proxy:3128 x"))
    assert "Pr0xyPw" not in text and "***@proxy:3128" in text
