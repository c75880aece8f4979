"""Logging (exporter/logs.py): every line on stderr is one event in the configured format,
the standard library's loggers (aiohttp, asyncio) included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter import logs
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Fault, SimFlow, Simulator, static_flows
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


# Vendor text a careless or compromised endpoint may send: terminal escapes, a forged log line
# (in both formats), NUL, a C1 CSI, a lone surrogate, a non-ASCII letter; and far too much of it.
HOSTILE = ("\x1b[2J\x1b]0;owned\x07\rts=2020-01-01 level=info event=forged\n"
           '{"event": "forged"}\x00\x9b31m\ud800 ✓ ' + "A" * 100_000)
EVENTS = ("flow_poll_failed", "node_calls_failed", "flow_discovered")
# One logfmt line: key=value pairs, a value bare or quoted with backslash escapes, nothing else.
LOGFMT_LINE = re.compile(r'[^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?: [^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*))*')
LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def logfmt_fields(line: str) -> dict[str, str]:
    assert LOGFMT_LINE.fullmatch(line), line[:300]
    fields = {}
    for key, raw in LOGFMT_PAIR.findall(line):
        fields[key] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
    return fields


def no_controls(raw: bytes) -> str:
    """``raw`` is UTF-8 holding no control character but the newline (C0, DEL, C1)."""
    text = raw.decode("utf-8")
    bad = sorted({f"{ord(ch):#x}" for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F})
    assert not bad, bad
    return text


async def hostile_sim(make_sim) -> Simulator:
    """Flow 1 fails with the hostile msg, a node of flow 2 too, and discovery lists flow 3 named with it."""
    sim = await make_sim(flows=[*static_flows(2, 1), SimFlow(key_id=3, task_name=HOSTILE)])
    sim.flow_faults[1] = Fault("api", -18, HOSTILE)
    sim.task_faults[7002000] = Fault("api", -18, HOSTILE)  # flow 2's node
    return sim


def hostile_config(tmp_path: Path, sim: Simulator) -> Path:
    (tmp_path / "secret").write_text(DEMO_API_SECRET)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        api:
          base_url: {sim.base_url}
          api_key: {DEMO_API_KEY}
          api_secret_file: {tmp_path / 'secret'}
          retries: 0
        discovery:
          enabled: true
        enrich:
          node_calls: true
        balance:
          enabled: false
        flows:
          - key_id: 1
          - key_id: 2
        """))
    return path


async def run_until_logged(path: Path, fmt: str, env: dict[str, str]) -> bytes:
    """Run the exporter until it has logged every event of :data:`EVENTS`; its stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config.file", str(path), "--log.format", fmt,
        "--web.listen-address", f"127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )
    assert process.stderr is not None
    err = b""
    try:
        async with asyncio.timeout(30):
            while not all(event.encode() in err for event in EVENTS):
                line = await process.stderr.readline()
                assert line, err.decode(errors="replace")[-3000:]
                err += line
    finally:
        process.terminate()
        _, rest = await process.communicate()
    return err + rest


@pytest.mark.parametrize("fmt, env", [
    ("logfmt", {}),
    ("json", {}),
    ("logfmt", {"PYTHONIOENCODING": "ascii:strict"}),
], ids=["logfmt", "json", "logfmt-ascii-stderr"])
async def test_vendor_text_in_logs_is_escaped_capped_and_one_event_per_line(tmp_path, make_sim, fmt, env):
    sim = await hostile_sim(make_sim)
    err = no_controls(await run_until_logged(hostile_config(tmp_path, sim), fmt, env))
    assert "Traceback" not in err
    lines = err.splitlines()
    events = [json.loads(line) for line in lines] if fmt == "json" else [logfmt_fields(line) for line in lines]
    assert all(event["ts"] and event["level"] for event in events)
    assert not any(event["event"] == "forged" for event in events)
    by_name = {event["event"]: event for event in events}
    hostile = [by_name["flow_poll_failed"]["error"], by_name["node_calls_failed"]["error"],
               by_name["flow_discovered"]["task_name"]]
    for text in hostile:
        # each control character is a visible escape, the forged line a part of the value it came in
        assert text.startswith("\\x1b[2J\\x1b]0;owned\\x07\\x0dts=2020-01-01 level=info event=forged\\x0a"), text[:200]
        assert "\\x00" in text and "\\x9b31m" in text
        # the lone surrogate escaped, or replaced where the decoder keeps the text (taskName)
        assert any(mark in text for mark in ("\\ud800", "\ufffd", "\\ufffd"))
        assert ("\\u2713" if env else "✓") in text  # what the stream cannot encode is escaped, not fatal
        assert len(text) < 8 * 1024
    assert len(lines) < 50 and len(err) < 64 * 1024


def test_every_value_and_key_of_any_event_is_made_safe() -> None:
    out = io.StringIO()
    logs.configure("info", "logfmt", stream=out)
    logging.getLogger("aiohttp.access").warning("GET /\x1b[31m\nforged=1")
    import structlog

    structlog.get_logger().info("event\r", **{"odd key\x07": "v"}, path=Path("logs/a\nb"), items=["\x1b"])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue() and "\x07" not in out.getvalue()
    assert 'event="GET /\\\\x1b[31m\\\\x0aforged=1"' in lines[0]
    assert "event=event\\x0d" in lines[1] and "odd_key\\x07=v" in lines[1] and "path=logs/a\\x0ab" in lines[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """A logger keeping what it is told: (level, event, fields) per line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append((level, event, fields))


def test_one_line_per_key_and_interval_the_next_saying_how_many_were_left_out() -> None:
    clock, out = Clock(), Lines()
    limit = logs.RateLimitedLog(out, interval=10, clock=clock)
    for i in range(4):
        limit.log("http_accept_failed", error=f"e{i}")
    limit.log("http_connection_limit_reached", max_connections=2)  # another key: its own interval
    clock.now += 9.9
    limit.log("http_accept_failed", error="e4")  # still within the interval
    clock.now += 0.1
    limit.log("http_accept_failed", error="e5")
    limit.log("http_accept_failed", error="e6")
    clock.now += 10
    limit.log("http_accept_failed", error="e7")
    assert out.lines == [
        ("warning", "http_accept_failed", {"error": "e0"}),
        ("warning", "http_connection_limit_reached", {"max_connections": 2}),
        ("warning", "http_accept_failed", {"error": "e5", "suppressed": 4}),  # e1..e4
        ("warning", "http_accept_failed", {"error": "e7", "suppressed": 1}),  # e6
    ]


def test_admit_decides_for_a_caller_writing_its_own_lines() -> None:
    clock = Clock()
    limit = logs.RateLimitedLog(None, interval=10, clock=clock)
    key = ("asyncio", "Task exception was never retrieved")
    assert [limit.admit(key) for _ in range(3)] == [0, None, None]
    clock.now += 10
    assert limit.admit(key) == 2


def test_a_tally_counts_a_field_per_value_and_a_line_says_every_event_it_stands_for() -> None:
    clock, out = Clock(), Lines()
    limit = logs.RateLimitedLog(out, interval=60, clock=clock, tally="reason", level="info")
    limit.log("http_auth_failed", reason="wrong_password", last_remote="10.0.0.1", last_user="alice")
    for reason in ("wrong_password", "unknown_user", "wrong_password", "missing"):
        limit.log("http_auth_failed", reason=reason, last_remote="10.0.0.2")
    clock.now += 60
    limit.flush()
    limit.flush()  # nothing held back: no line
    assert out.lines == [
        ("info", "http_auth_failed", {"last_remote": "10.0.0.1", "last_user": "alice", "count": 1,
                                      "reasons": "wrong_password:1"}),
        ("info", "http_auth_failed", {"last_remote": "10.0.0.2", "count": 4,
                                      "reasons": "missing:1,unknown_user:1,wrong_password:2"}),
    ]


async def test_what_is_held_back_is_written_when_the_interval_ends_and_never_after_stop() -> None:
    out = Lines()
    limit = logs.RateLimitedLog(out, interval=0.2, flush=True)  # the loop's clock: real timers
    limit.log("http_accept_failed", error="e0")
    limit.log("http_accept_failed", error="e1")
    limit.log("http_accept_failed", error="e2")
    assert len(out.lines) == 1
    await asyncio.sleep(0.5)
    assert out.lines[1:] == [("warning", "http_accept_failed", {"error": "e2", "suppressed": 1})]
    await asyncio.sleep(0.3)  # nothing held back: the timer is not armed again
    assert len(out.lines) == 2
    limit.log("http_accept_failed", error="e3")  # due: written at once
    limit.log("http_accept_failed", error="e4")  # held back, its timer armed
    limit.stop()
    limit.log("http_accept_failed", error="e5")  # held back, no timer after stop
    await asyncio.sleep(0.5)
    assert [fields["error"] for _, _, fields in out.lines] == ["e0", "e2", "e3"]


def test_its_memory_is_bounded_forgetting_the_key_written_longest_ago() -> None:
    clock, out = Clock(), Lines()
    limit = logs.RateLimitedLog(out, interval=10, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limit.log(key)
    limit.log("a")  # held back
    limit.log("d")  # "a" is written longest ago: forgotten, with the one it held back
    assert len(limit) == 3
    limit.log("a")  # a key anew: written at once, nothing to report
    limit.log("c")  # still remembered: held back
    assert out.lines[-1] == ("warning", "a", {}) and len(out.lines) == 5
    for i in range(10_000):
        limit.admit(("aiohttp.server", f"message {i}"))
    assert len(limit) == 3


def test_a_foreign_message_repeated_is_let_through_once_per_interval_with_the_number_dropped() -> None:
    clock = Clock()
    foreign = logs.ForeignFilter(logging.INFO, interval=10, clock=clock)

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.makeLogRecord({"name": "asyncio", "msg": msg, "levelno": level})

    assert [foreign.filter(record("Unclosed client session")) for _ in range(3)] == [True, False, False]
    assert foreign.filter(record("another message"))  # its own interval
    assert all(foreign.filter(record("Unclosed client session", logging.INFO)) for _ in range(3))  # info: never held back
    assert not foreign.filter(record("a debug line", logging.DEBUG))  # below the level
    clock.now += 10
    again = record("Unclosed client session")
    assert foreign.filter(again) and vars(again)["suppressed"] == 2
