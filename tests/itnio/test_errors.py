"""A failed request costs a bounded summary: the ApiError, its traceback and the body its frames
hold are freed by reference counting the moment the catcher drops them (the cyclic collector is
off in these tests: what it would have to free stays, and the tests see it)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import sys
import tracemalloc
import weakref
from collections.abc import Iterator

import pytest
from aiohttp import web

from exporter.itnio.errors import ApiError, ErrorKind, Failure
from exporter.itnio.model import MAX_ANSWER_BYTES
from exporter.simulator import Fault, static_flows
from exporter.text import MAX_TEXT
from tests.helpers import make_client

MIB = 1024 * 1024


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _fail(client, key_id: int = 1) -> tuple[weakref.ref[ApiError], Failure]:
    """Query, expecting an ApiError: a weak reference to it, and its summary."""
    try:
        await client.query_detail(key_id)
    except ApiError as error:
        return weakref.ref(error), error.summary()
    raise AssertionError("the request did not fail")


async def test_a_7_mb_non_json_answer_is_freed_at_once_and_leaves_a_small_summary(make_sim, no_cyclic_gc):
    sim = await make_sim(flows=static_flows(1, 3))
    sim.serve_hostile("junk", 7 * MIB)
    client, _ = make_client(sim.base_url, max_response_bytes=8 * MIB)
    try:
        await _fail(client)  # connection set up, pools allocated: not what is measured
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            error, summary = await _fail(client)
            await asyncio.sleep(0.1)  # the simulator, in this process, finishes writing the answer
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    finally:
        await client.close()
    assert error() is None  # freed by reference counting: no cycle through its traceback
    assert kept < MAX_ANSWER_BYTES + 64 * 1024, f"{kept} bytes still held after the error was dropped"
    assert summary.kind is ErrorKind.DECODE and summary.status == 200
    assert not hasattr(summary, "__traceback__") and not hasattr(summary, "__dict__")
    assert summary.answer is not None and len(summary.answer.body) == MAX_ANSWER_BYTES
    assert summary.answer.size == 7 * MIB


@pytest.mark.parametrize("fault", [Fault("timeout"), Fault("network"), Fault("http", 503), Fault("decode")])
async def test_every_kind_of_failure_is_freed_by_reference_counting(fault, make_sim, no_cyclic_gc):
    sim = await make_sim(flows=static_flows(1, 3), hang_seconds=5)
    sim.flow_faults[1] = fault
    client, _ = make_client(sim.base_url, timeout=0.3)
    try:
        error, summary = await _fail(client)
    finally:
        await client.close()
    assert error() is None, f"a {fault.kind} error outlived its catcher (a reference cycle)"
    assert summary.kind.value == fault.kind


async def test_the_summary_keeps_a_capped_message(make_server):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"code": -18, "msg": "x" * MIB})

    port = await make_server(handler)
    client, _ = make_client(f"http://127.0.0.1:{port}", max_response_bytes=2 * MIB)
    try:
        _, summary = await _fail(client)
    finally:
        await client.close()
    assert summary.kind is ErrorKind.API and summary.code == "-18"
    assert len(summary.message) < MAX_TEXT + 64
    assert sys.getsizeof(summary.message) < MAX_TEXT * 2


async def test_a_gzip_bomb_is_cut_at_max_response_bytes_once_inflated(make_sim, no_cyclic_gc):
    sim = await make_sim(flows=static_flows(1, 3))
    sim.serve_hostile("gzip_bomb", 256 * MIB)  # 256 KiB on the wire
    client, _ = make_client(sim.base_url, max_response_bytes=MIB)
    try:
        tracemalloc.start()
        try:
            error, summary = await _fail(client)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        await client.close()
    assert summary.kind is ErrorKind.DECODE and "exceeds 1048576 bytes once inflated" in summary.message
    assert peak < 8 * MIB, f"inflating the bomb took {peak} bytes"
    assert error() is None


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_a_compressed_answer_is_inflated_and_used(encoding, make_server):
    from exporter.simulator.server import envelope

    body = json.dumps(envelope("code-int", 0, "success", static_flows(1, 3)[0].data(0.0))).encode()
    if encoding == "gzip":
        sent = gzip.compress(body)
    else:
        import zlib

        compressor = zlib.compressobj(wbits=zlib.MAX_WBITS if encoding == "deflate" else -zlib.MAX_WBITS)
        sent = compressor.compress(body) + compressor.flush()

    async def handler(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        headers = {"Content-Encoding": "gzip" if encoding == "gzip" else "deflate", "Content-Type": "application/json"}
        return web.Response(body=sent, headers=headers)

    port = await make_server(handler)
    client, _ = make_client(f"http://127.0.0.1:{port}")
    try:
        detail = await client.query_detail(1)
    finally:
        await client.close()
    assert len(detail.nodes) == 3


async def test_an_unknown_content_encoding_is_a_decode_error(make_server):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"\x00" * 100, headers={"Content-Encoding": "br"})

    port = await make_server(handler)
    client, _ = make_client(f"http://127.0.0.1:{port}")
    try:
        _, summary = await _fail(client)
    finally:
        await client.close()
    assert summary.kind is ErrorKind.DECODE and "Content-Encoding" in summary.message
