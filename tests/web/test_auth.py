"""Basic auth and the configured headers (exporter/web/auth.py), served by a real exporter over loopback."""

from __future__ import annotations

import threading

import bcrypt
import pytest

from exporter.simulator import Simulator
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
