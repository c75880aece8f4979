"""Basic auth and the configured headers (exporter/web/auth.py), served by a real exporter over loopback."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import bcrypt
import pytest
import structlog

from exporter.simulator import Simulator
from tests.conftest import fetch, parse_samples, value
from tests.helpers import HASH, PASSWORD, TLS, USERS, Pki, basic, get, write_web_config
from tests.web.conftest import Start


async def test_basic_auth_over_tls(pki: Pki, start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real_checkpw = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        threads.append(threading.current_thread())
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    exporter = await start(write_web_config(pki.dir, TLS + USERS))
    auth = exporter.auth
    assert auth is not None
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    context = pki.client_context()

    status, headers = await get(url, ssl_context=context)
    assert (status, headers.get("WWW-Authenticate")) == (401, "Basic")
    assert auth.bcrypt_checks == 0  # no credentials: nothing to check

    status, headers = await get(url, ssl_context=context, headers=basic("alice", "wrong"))
    assert (status, headers.get("WWW-Authenticate")) == (401, "Basic")
    assert (auth.bcrypt_checks, auth.dummy_checks) == (1, 0)

    # An unknown user costs a bcrypt too, against the dummy hash.
    status, _ = await get(url, ssl_context=context, headers=basic("mallory", PASSWORD))
    assert status == 401
    assert (auth.bcrypt_checks, auth.dummy_checks) == (2, 1)

    status, _ = await get(url, ssl_context=context, headers=basic("alice", PASSWORD))
    assert status == 200
    assert (auth.bcrypt_checks, auth.cache_hits) == (3, 0)
    # The second scrape is answered from the cache: no bcrypt.
    status, _ = await get(url, ssl_context=context, headers=basic("alice", PASSWORD))
    assert status == 200
    assert (auth.bcrypt_checks, auth.cache_hits) == (3, 1)

    assert len(threads) == 3 and all(t is not threading.main_thread() for t in threads)
    assert "correct" not in repr(auth) and HASH not in repr(exporter.web_config)


async def test_dummy_hash_has_the_users_cost(pki: Pki, start: Start) -> None:
    exporter = await start(write_web_config(pki.dir, USERS))
    assert exporter.auth is not None and exporter.web_config is not None
    dummy = exporter.auth._dummy_for(exporter.web_config.users)
    assert dummy[:7] == HASH[:7].encode() and len(dummy) == 60  # $2b$04$
    assert not bcrypt.checkpw(PASSWORD.encode(), dummy)


async def test_every_endpoint_protected_unless_health_is_opened(pki: Pki, start: Start, sim: Simulator) -> None:
    closed = await start(write_web_config(pki.dir, USERS))
    for path in ("/metrics", "/healthz", "/readyz", "/", "/flows", "/flows/1", "/flows?format=json", "/no-such-page"):
        status, _ = await get(f"http://127.0.0.1:{closed.port}{path}")
        assert status == 401, path
    opened = await start(pki.dir / "web-config.yml", health_unauthenticated=True)
    assert (await get(f"http://127.0.0.1:{opened.port}/metrics"))[0] == 401
    for path in ("/healthz", "/readyz"):
        status, _ = await get(f"http://127.0.0.1:{opened.port}{path}")
        assert status in (200, 503), path  # answered, not 401


async def test_configured_headers_on_every_answer(pki: Pki, start: Start) -> None:
    text = USERS + (
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n"
    )
    exporter = await start(write_web_config(pki.dir, text))
    for headers in ({}, basic("alice", PASSWORD)):
        for path in ("/metrics", "/no-such-page"):
            _, got = await get(f"http://127.0.0.1:{exporter.port}{path}", headers=headers)
            assert got["X-Frame-Options"] == "deny"
            assert got["Strict-Transport-Security"] == "max-age=31536000"


# -- floods of wrong passwords (docs/security.md#floods-of-wrong-passwords) ------------------


class SlowBcrypt:
    """bcrypt.checkpw that blocks until released, and records every password it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[bytes] = []
        self.gate = threading.Event()
        real = bcrypt.checkpw

        def slow(password: bytes, hashed: bytes) -> bool:
            self.calls.append(password)
            self.gate.wait(10)
            return real(password, hashed)

        monkeypatch.setattr(bcrypt, "checkpw", slow)

    async def running(self, n: int) -> None:
        for _ in range(500):
            if len(self.calls) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.calls)} bcrypt checks running, expected {n}")


async def get_from(source: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url, headers=headers) as r:
        await r.read()
        return r.status, dict(r.headers)


async def test_a_flood_from_one_address_is_refused_at_once_and_other_addresses_still_log_in(
    pki: Pki, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowBcrypt(monkeypatch)
    exporter = await start(write_web_config(pki.dir, USERS))
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    first = asyncio.create_task(get(url, headers=basic("alice", "wrong-1")))
    await slow.running(1)
    # The same address already has a check pending: the next one is answered now, not queued.
    status, headers = await asyncio.wait_for(get(url, headers=basic("alice", "wrong-2")), 2)
    assert (status, headers.get("Retry-After")) == (429, "1")
    # Another address is checked meanwhile, on the other worker.
    other = asyncio.create_task(get_from("127.0.0.2", url, basic("alice", PASSWORD)))
    await slow.running(2)
    slow.gate.set()
    assert (await other)[0] == 200 and (await first)[0] == 401
    samples = await scrape_as_alice(exporter.port)
    failures = {reason: value(samples, "itnio_exporter_http_auth_failures_total", reason=reason) for reason in REASONS}
    assert failures == {"missing": 0, "malformed": 0, "unknown_user": 0, "wrong_password": 1, "rejected_busy": 1}


async def test_a_check_whose_client_left_before_its_turn_costs_no_bcrypt(
    pki: Pki, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowBcrypt(monkeypatch)
    exporter = await start(write_web_config(pki.dir, USERS))
    assert exporter.auth is not None
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    busy = [asyncio.create_task(get_from(f"127.0.0.{i}", url, basic("alice", f"wrong-{i}"))) for i in (1, 2)]
    await slow.running(2)  # both workers busy
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port, local_addr=("127.0.0.3", 0))
    auth = basic("alice", "wrong-3")["Authorization"]
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
    await writer.drain()
    for _ in range(200):
        if exporter.auth.pending == 3:
            break
        await asyncio.sleep(0.01)
    assert exporter.auth.pending == 3  # waiting for a worker
    writer.transport.abort()  # the client goes away
    for _ in range(200):
        if exporter.auth.pending == 2:
            break
        await asyncio.sleep(0.01)
    slow.gate.set()
    assert [(await task)[0] for task in busy] == [401, 401]
    await asyncio.sleep(0.1)
    assert len(slow.calls) == 2 and b"wrong-3" not in slow.calls
    assert exporter.auth.pending == 0


async def test_a_repeated_wrong_password_costs_one_bcrypt_and_every_failure_is_counted(
    pki: Pki, start: Start
) -> None:
    exporter = await start(write_web_config(pki.dir, USERS))
    auth = exporter.auth
    assert auth is not None
    port = exporter.port
    before = await scrape_as_alice(port)
    assert {r: value(before, "itnio_exporter_http_auth_failures_total", reason=r) for r in REASONS} == dict.fromkeys(
        REASONS, 0
    )
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in range(5):
        assert (await get(url, headers=basic("alice", "wrong")))[0] == 401
    assert (auth.bcrypt_checks, auth.failure_cache_hits) == (2, 4)  # alice's scrape, then one for "wrong"
    assert (await get(url, headers=basic("mallory", "wrong")))[0] == 401
    assert (await get(url))[0] == 401
    assert (await get(url, headers={"Authorization": "Bearer abc"}))[0] == 401
    after = await scrape_as_alice(port)
    got = {r: value(after, "itnio_exporter_http_auth_failures_total", reason=r) for r in REASONS}
    assert got == {"missing": 1, "malformed": 1, "unknown_user": 1, "wrong_password": 5, "rejected_busy": 0}


async def test_failures_are_logged_once_a_minute_with_a_count_never_with_the_password(
    pki: Pki, start: Start
) -> None:
    exporter = await start(write_web_config(pki.dir, USERS))
    assert exporter.auth is not None
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    with structlog.testing.capture_logs() as logged:
        for i in range(3):
            assert (await get(url, headers=basic("alice", f"secret-{i}")))[0] == 401
        assert (await get(url, headers=basic("typed-password-as-user", "x")))[0] == 401
        exporter.auth.failures.flush()  # what the timer does a minute after the first line
    lines = [entry for entry in logged if entry["event"] == "http_auth_failed"]
    assert [line["count"] for line in lines] == [1, 3]
    assert lines[1]["reasons"] == "unknown_user:1,wrong_password:2"
    assert lines[0]["last_user"] == "alice" and "last_user" not in lines[1]  # a name as typed is not logged
    assert "secret-" not in repr(logged) and "typed-password" not in repr(logged)


async def test_passwords_are_compared_on_their_first_72_bytes_as_go_does(pki: Pki, start: Start) -> None:
    long = "p" * 60 + "é" * 20  # 100 bytes in UTF-8
    hashed = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    exporter = await start(write_web_config(pki.dir, f"basic_auth_users:\n  bob: '{hashed}'\n"))
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    assert (await get(url, headers=basic("bob", long)))[0] == 200
    assert (await get(url, headers=basic("bob", "p" * 60 + "é" * 6 + "whatever follows")))[0] == 200
    assert (await get(url, headers=basic("bob", "p" * 60 + "é" * 5)))[0] == 401


REASONS = ("missing", "malformed", "unknown_user", "wrong_password", "rejected_busy")


async def scrape_as_alice(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, _, body = await fetch(port, headers=basic("alice", PASSWORD))
    assert status == 200
    return parse_samples(body.decode())
