"""How the client reaches the vendor (exporter/itnio/transport.py): verified TLS, a private CA,
insecure_skip_verify, proxies, and redirects that are not followed."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme
from aiohttp import web

from exporter.accounts.runtime import build_client
from exporter.config import (
    Credentials,
    validate_config,
)
from exporter.itnio.endpoints import QUERY_DETAIL
from exporter.itnio.errors import ApiError, ErrorKind
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator
from tests.conftest import ServerFactory, exporter_config

CREDS = Credentials(DEMO_API_KEY, DEMO_API_SECRET, "test")


class Client:
    """An ItnioClient built from an ``api`` config section, the way the exporter builds it."""

    def __init__(self, sim: Simulator, **api: Any):
        config = validate_config(exporter_config(sim, api=api))
        self.telemetry = Telemetry()
        # One call, one request: no retries.
        self.client = build_client(config.api.model_copy(update={"retries": 0}), CREDS, self.telemetry.account("default"))
        self.key = sorted(sim.flows)[0]

    async def query(self) -> None:
        await self.client.query_detail(self.key)

    def errors(self, kind: str, code: str = "") -> float:
        value = self.telemetry.registry.get_sample_value(
            "itnio_api_errors_total", {"account": "default", "endpoint": QUERY_DETAIL, "kind": kind, "code": code}
        )
        return value or 0.0


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.client.close()


@pytest.fixture
async def tls_sim(sim: Simulator, tmp_path: Path, make_server: ServerFactory) -> tuple[str, Path]:
    """The simulator's app over TLS, with a certificate from a private CA: (base_url, CA file)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "vendor-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = await make_server(sim.app(), ssl_context=context)
    return f"https://127.0.0.1:{port}", ca_file


async def test_vendor_certificate_verified_unless_its_ca_is_given(
    sim: Simulator, tls_sim: tuple[str, Path], clients: list[Client]
) -> None:
    base_url, ca_file = tls_sim
    untrusted = Client(sim, base_url=base_url)
    clients.append(untrusted)
    with pytest.raises(ApiError) as caught:
        await untrusted.query()
    assert caught.value.kind is ErrorKind.NETWORK
    assert "certificate verify failed" in caught.value.message, caught.value.message
    assert untrusted.errors("network") == 1

    trusted = Client(sim, base_url=base_url, tls={"ca_file": str(ca_file)})
    clients.append(trusted)
    await trusted.query()
    assert trusted.errors("network") == 0


async def test_insecure_skip_verify_is_loud(sim: Simulator, tls_sim: tuple[str, Path], clients: list[Client]) -> None:
    base_url, _ = tls_sim
    with structlog.testing.capture_logs() as logs:
        insecure = Client(sim, base_url=base_url, tls={"insecure_skip_verify": True})
    clients.append(insecure)
    assert [e["log_level"] for e in logs if e["event"] == "tls_verification_disabled"] == ["warning"]
    await insecure.query()  # and it is used: the certificate of a private CA is not checked
    assert insecure.errors("network") == 0


async def test_redirect_to_another_host_is_not_followed(
    sim: Simulator, clients: list[Client], make_server: ServerFactory
) -> None:
    received: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response({"code": 0, "data": {}})

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", record)
    other_port = await make_server(other_app)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://localhost:{other_port}{request.path}")

    redirect_app = web.Application()
    redirect_app.router.add_route("*", "/{tail:.*}", redirect)
    port = await make_server(redirect_app)
    client = Client(sim, base_url=f"http://127.0.0.1:{port}")
    clients.append(client)
    with pytest.raises(ApiError) as caught:
        await client.query()
    assert (caught.value.kind, caught.value.code) == (ErrorKind.HTTP, "307")
    assert client.errors("http", "307") == 1
    assert received == []  # the other host saw nothing, and no Sign header


@pytest.fixture
async def proxy(make_server: ServerFactory) -> tuple[str, list[str]]:
    """A stand-in HTTP proxy on loopback that records the absolute URLs it is asked for."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(status=502)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    port = await make_server(app)
    return f"http://127.0.0.1:{port}", seen


async def test_proxy_url_is_used(sim: Simulator, proxy: tuple[str, list[str]], clients: list[Client]) -> None:
    proxy_url, seen = proxy
    client = Client(sim, proxy_url=proxy_url)
    clients.append(client)
    with pytest.raises(ApiError):
        await client.query()
    assert len(seen) == 1 and seen[0].endswith("/voice/recallFlow/queryDetail")
    assert client.errors("http", "502") == 1


async def test_proxy_from_environment_and_no_proxy(
    sim: Simulator, proxy: tuple[str, list[str]], clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_url, seen = proxy
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    client = Client(sim)
    clients.append(client)
    with pytest.raises(ApiError):
        await client.query()
    assert len(seen) == 1
    # The environment is read when the client is made (start, reload), as Go's
    # http.ProxyFromEnvironment does: not per request.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = Client(sim)
    clients.append(client)
    await client.query()  # straight to the simulator
    assert len(seen) == 1
