"""The listening side (exporter/web/listener.py): late headers, idle keep-alive, the connection limit,
and running out of descriptors, against a real exporter over loopback."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from exporter.simulator import Simulator
from tests.conftest import free_port
from tests.helpers import wait_for_http

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def serve(make_exporter, sim: Simulator, **options: Any):
    return await make_exporter(sim, run_poller=False, exporter_options=options)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (whatever it sent before)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
        return True
    except (TimeoutError, ConnectionError):
        return False


async def answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1])
    return head + await reader.readexactly(length)


async def test_headers_trickled_in_are_cut_off(sim: Simulator, make_exporter) -> None:
    exporter = await serve(make_exporter, sim, header_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)

    async def trickle() -> None:
        for byte in REQUEST[:-4]:  # never the final blank line
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(trickle())
    assert await closed_within(reader, 3)
    task.cancel()
    writer.close()
    # A connection that sends nothing at all is closed as well.
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
    assert await closed_within(reader, 3)
    writer.close()


async def test_keep_alive_requests_get_the_same_deadline_and_idle_connections_close(
    sim: Simulator, make_exporter
) -> None:
    exporter = await serve(make_exporter, sim, header_timeout=0.5, idle_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
    writer.write(REQUEST)
    assert (await answer(reader)).startswith(b"HTTP/1.1 ")
    await asyncio.sleep(0.7)  # idle, not late: the clock starts with the next request's first byte
    writer.write(REQUEST)
    assert (await answer(reader)).startswith(b"HTTP/1.1 ")
    writer.write(REQUEST[:5])  # a next request that never completes
    started = time.monotonic()
    assert await closed_within(reader, 3)
    assert time.monotonic() - started < 1.0  # the header deadline, not the idle timeout
    writer.close()
    # Idle after an answer: closed after idle_timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
    writer.write(REQUEST)
    await answer(reader)
    assert not await closed_within(reader, 0.5)
    assert await closed_within(reader, 3)
    writer.close()


async def test_at_the_connection_limit_new_connections_wait_for_a_free_place(sim: Simulator, make_exporter) -> None:
    exporter = await serve(make_exporter, sim, max_connections=2, header_timeout=5)
    held = [await asyncio.open_connection("127.0.0.1", exporter.port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)  # in the kernel's backlog
    writer.write(REQUEST)
    waiting = asyncio.create_task(answer(reader))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    held[0][1].close()
    assert (await asyncio.wait_for(waiting, 3)).startswith(b"HTTP/1.1 ")
    for _, w in held[1:] + [(reader, writer)]:
        w.close()


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # hard = soft: raising it has no effect


def test_out_of_descriptors_logs_one_line_per_event_and_recovers() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--log.format", "json", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_low_descriptor_limit,
    )
    held: list[socket.socket] = []
    try:
        wait_for_http(port, proc)
        for _ in range(150):  # more than the 64 descriptors the exporter may open
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(1.5)
        for sock in held:
            sock.close()
        held.clear()
        wait_for_http(port, proc)  # answers again once descriptors are free
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = err.splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(err) < 20_000, err[-2000:]
    limit = next(e for e in events if e["event"] == "open_files_limit")
    assert (limit["soft"], limit["hard"]) == (64, 64)
    failed = [e for e in events if e["event"] == "http_accept_failed"]
    assert 1 <= len(failed) <= 3 and failed[0]["error"] == "Too many open files"
