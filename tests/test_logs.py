"""Logging (exporter/logs.py): every line on stderr is one event in the configured format,
the standard library's loggers (aiohttp, asyncio) included."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys

from exporter import logs
from tests.conftest import free_port
from tests.helpers import wait_for_http

MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/9.9\r\nContent-Length: -1\r\n\r\n",
)


def test_malformed_requests_are_one_json_line_each_at_most() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--log.format", "json", "--log.level", "debug",
         "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    sent = 0
    try:
        wait_for_http(port, proc)
        for _ in range(50):
            for request in MALFORMED:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(request)
                    sock.recv(1024)
                sent += 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    events = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    bad = [e for e in events if e["event"] == "http_bad_request"]
    assert 0 < len(bad) <= sent and all(e["level"] == "debug" for e in bad)
    assert all(e.get("remote", "127.0.0.1") == "127.0.0.1" for e in bad)  # older aiohttp does not name it
    assert "Traceback" not in err and len(err) < 400 * sent


def test_other_libraries_log_one_line_without_traceback_and_repeats_are_held_back() -> None:
    out = io.StringIO()
    logs.configure("info", "logfmt", stream=out)
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        for _ in range(3):
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
    logging.getLogger("aiohttp.server").info("an info line of another library")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("ts=") and "level=error" in lines[0] and "logger=asyncio" in lines[0]
    assert 'error="ValueError: first line second line"' in lines[0]
    assert "level=info" in lines[1] and "logger=aiohttp.server" in lines[1]
