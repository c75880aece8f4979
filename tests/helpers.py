"""Helpers shared by several test files: a fake clock, a client with its counters, config problems,
vendor answers to mutate, and certificates and requests for the web tests."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme

from exporter.config import ConfigError, Credentials, validate_config
from exporter.itnio.client import ItnioClient
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET
from tests.conftest import parse_samples


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


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
        telemetry=telemetry.account("default"),
        retries=retries,
        **extra,
    )
    return client, telemetry


def counters(telemetry: Telemetry):
    from prometheus_client import generate_latest

    return parse_samples(generate_latest(telemetry.registry).decode())


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return info.value.problems


BIG = 2**63


def roundtrip(body: Any) -> Any:
    """What the client sees after the body went over the wire (NaN/Infinity included)."""
    return json.loads(json.dumps(body, allow_nan=True))


def base_body() -> dict[str, Any]:
    return {
        "code": 0,
        "msg": "success",
        "data": {
            "status": 1,
            "recallInterval": 5,
            "recallNum": 3,
            "recallType": 1,
            "nodeList": [
                {"keyId": 10, "taskId": 700, "nodeStatus": 2, "scriptId": 100},
                {"keyId": 11, "taskId": 701, "nodeStatus": 1, "scriptId": 100},
            ],
        },
    }


MISSING = object()


def mutated(where: str, field: str, new: Any) -> dict[str, Any]:
    body = base_body()
    target = body["data"] if where == "data" else body["data"]["nodeList"][1]
    if new is MISSING:
        del target[field]
    else:
        target[field] = new
    return body


PASSWORD = "correct horse"


# Generated hashes use the lowest cost to keep the tests fast; any cost is accepted.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, written to ``dir``."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.write_server_cert()
        self.ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        self.client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
        self.client = self.client_ca.issue_cert("prometheus@example.com")

    def write_server_cert(self) -> trustme.LeafCert:
        cert = self.ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(self.dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "server.crt"))
        return cert

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if with_cert:
            self.client.configure_cert(context)
        return context


def write_web_config(directory: Path, text: str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(text)
    return path


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


USERS = f"basic_auth_users:\n  alice: '{HASH}'\n"


async def get(
    url: str, *, ssl_context: ssl.SSLContext | bool | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ssl_context if ssl_context is not None else True, headers=headers or {}) as r:
            await r.read()
            return r.status, dict(r.headers)


def wait_for_http(port: int, proc: subprocess.Popen, path: str = "/healthz", *, ok_only: bool = False,
                  seconds: float = 20) -> None:
    """Until the exporter process ``proc`` answers ``path`` on ``port`` (with 200 when ``ok_only``);
    the test fails if the process exits first, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                status = sock.recv(64)
                if status.startswith(b"HTTP/1.0 200 " if ok_only else b"HTTP/1.0 "):
                    return
        except OSError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no answer to {path} on port {port} within {seconds} s"
        time.sleep(0.2)


async def until(condition: Callable[[], object], seconds: float = 10) -> None:
    """Until ``condition()`` holds, checked every 0.1 s, or fail after ``seconds``."""
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("did not happen in time")
