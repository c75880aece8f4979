"""The web config (exporter/web/webconfig.py): TLS and client certificates over real loopback
connections, certificates renewed without a restart, one line per invalid field, and the shipped
examples accepted by promtool and by this exporter.

Certificates are made by trustme in each test.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.config import (
    ConfigError,
)
from exporter.simulator import Simulator
from exporter.web.webconfig import TLS12_CIPHERS, WebConfig, build_ssl_context, load_web_config, validate_web_config
from tests.conftest import require_tool
from tests.helpers import TLS, Pki, get, write_web_config
from tests.web.conftest import Start

ROOT = Path(__file__).resolve().parents[2]


async def peer_serial(port: int, context: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


async def test_tls_serves_https_and_refuses_plain_http(pki: Pki, start: Start) -> None:
    exporter = await start(write_web_config(pki.dir, TLS))
    status, _ = await get(f"https://127.0.0.1:{exporter.port}/metrics", ssl_context=pki.client_context())
    assert status == 200
    with pytest.raises(aiohttp.ClientError):
        await get(f"http://127.0.0.1:{exporter.port}/metrics")
    # And a client that does not trust the CA refuses the server.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(f"https://127.0.0.1:{exporter.port}/metrics")


async def test_require_and_verify_client_cert(pki: Pki, start: Start) -> None:
    path = write_web_config(
        pki.dir, TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n"
    )
    exporter = await start(path)
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    with pytest.raises(aiohttp.ClientError):
        await get(url, ssl_context=pki.client_context(with_cert=False))
    # A certificate from another CA (the server's) is refused too.
    other = pki.client_context()
    pki.ca.issue_cert("intruder@example.com").configure_cert(other)
    with pytest.raises(aiohttp.ClientError):
        await get(url, ssl_context=other)
    status, _ = await get(url, ssl_context=pki.client_context(with_cert=True))
    assert status == 200


async def test_verify_client_cert_if_given(pki: Pki, start: Start) -> None:
    path = write_web_config(pki.dir, TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: client-ca.pem\n")
    exporter = await start(path)
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    assert (await get(url, ssl_context=pki.client_context()))[0] == 200
    assert (await get(url, ssl_context=pki.client_context(with_cert=True)))[0] == 200


async def test_renewed_certificate_is_served_without_restart(pki: Pki, start: Start) -> None:
    path = write_web_config(pki.dir, TLS)
    exporter = await start(path)
    assert exporter.web_config is not None
    context = pki.client_context()
    first = await peer_serial(exporter.port, context)
    assert not await exporter.web_config.check_certificates()  # nothing changed yet

    # A half-done renewal (new certificate, key not yet written) keeps the working pair.
    renewed = pki.ca.issue_cert("127.0.0.1")
    renewed.cert_chain_pems[0].write_to_path(str(pki.dir / "server.crt"))
    assert not await exporter.web_config.check_certificates()
    assert await peer_serial(exporter.port, context) == first

    renewed.private_key_pem.write_to_path(str(pki.dir / "server.key"))
    assert await exporter.web_config.check_certificates()
    second = await peer_serial(exporter.port, context)
    assert second != first
    assert second == _serial_of(pki.dir / "server.crt")

    # reload() (for SIGHUP) does the same on the same context.
    pki.write_server_cert()
    await exporter.web_config.areload()
    assert await peer_serial(exporter.port, context) == _serial_of(pki.dir / "server.crt") != second


async def test_a_renewal_checked_during_a_reload_never_replaces_the_reloaded_certificate(
    pki: Pki, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from exporter.web import webconfig

    path = write_web_config(pki.dir, TLS)
    exporter = await start(path)
    web_config = exporter.web_config
    assert web_config is not None
    pki.write_server_cert()  # renewed in place: the next check takes it
    other = pki.ca.issue_cert("127.0.0.1")
    other.cert_chain_pems[0].write_to_path(str(pki.dir / "other.crt"))
    other.private_key_pem.write_to_path(str(pki.dir / "other.key"))
    trying, release = threading.Event(), threading.Event()
    load = webconfig._load_cert_chain

    def slow_once(context: ssl.SSLContext, tls: webconfig.TLSServerConfig) -> None:
        if not trying.is_set():
            trying.set()
            release.wait(10)
        load(context, tls)

    monkeypatch.setattr(webconfig, "_load_cert_chain", slow_once)
    check = asyncio.create_task(web_config.check_certificates())
    await asyncio.to_thread(trying.wait, 10)
    path.write_text(TLS.replace("server.crt", "other.crt").replace("server.key", "other.key"))
    await web_config.areload()  # meanwhile a reload names another pair
    release.set()
    await check
    assert await peer_serial(exporter.port, pki.client_context()) == _serial_of(pki.dir / "other.crt")


async def test_background_watch_picks_up_renewal(pki: Pki, sim: Simulator, make_exporter) -> None:
    web_config = WebConfig(write_web_config(pki.dir, TLS), watch_interval=0.05)
    exporter = await make_exporter(sim, run_poller=False, exporter_options={"web_config": web_config})
    try:
        context = pki.client_context()
        first = await peer_serial(exporter.port, context)
        pki.write_server_cert()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if web_config.reloads:
                break
        assert web_config.reloads == 1
        assert await peer_serial(exporter.port, context) not in (first,)
    finally:
        await exporter.stop()
    assert web_config._watch_task is None


def _serial_of(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file"),
        (TLS + "  client_auth_type: RequireCert\n", "tls_server_config.client_auth_type"),
        (TLS + "  client_ca_file: ca.pem\n", "tls_server_config.client_ca_file"),
        (TLS + "  min_version: TLS14\n", "tls_server_config.min_version"),
        (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.min_version"),
        (TLS + "  cipher_suites: [TLS_NOPE]\n", "tls_server_config.cipher_suites"),
        (TLS + "  curve_preferences: [P256]\n", "tls_server_config.curve_preferences"),
        (TLS + "  client_allowed_sans: [a]\n", "tls_server_config.client_allowed_sans"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: ca.pem\n", "tls_server_config.cert_file"),
        ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "http_server_config.headers"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "http_server_config.headers"),
        ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users"),
        ("basic_auth_users:\n  alice: '$2b$03$" + "a" * 53 + "'\n", "basic_auth_users"),
        ("basic_auth_user:\n  alice: x\n", "basic_auth_user"),
    ],
)
def test_invalid_web_config_names_the_field(pki: Pki, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(write_web_config(pki.dir, text))
    assert any(f": {field}: " in line for line in caught.value.problems), caught.value.problems
    assert "hunter2" not in str(caught.value.problems)


def test_all_client_auth_types_and_cipher_names(pki: Pki) -> None:
    for mode in ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
                 "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        ca = "" if mode == "NoClientCert" else "  client_ca_file: client-ca.pem\n"
        model = load_web_config(write_web_config(pki.dir, TLS + f"  client_auth_type: {mode}\n" + ca))
        expected = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
                    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL}.get(model.tls_server_config.client_auth_type, ssl.CERT_REQUIRED)
        assert build_ssl_context(model.tls_server_config).verify_mode == expected, mode
    # The modern TLS 1.2 suites are all known to this OpenSSL by the names mapped.
    for go_name, openssl_name in TLS12_CIPHERS.items():
        if "GCM" in go_name or "CHACHA20" in go_name:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_name)
    model = validate_web_config(
        {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "max_version": "TLS12",
                               "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]}},
        pki.dir,
    )
    names = {c["name"] for c in build_ssl_context(model.tls_server_config).get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES128-GCM-SHA256"}


def _check_with_promtool(pki: Pki, text: str) -> None:
    promtool = require_tool("promtool")
    # The example names its files relative to itself: put test certificates under those names.
    raw = yaml.safe_load(text)
    tls = raw.get("tls_server_config", {})
    for key in ("cert_file", "key_file", "client_ca_file"):
        if tls.get(key, "").startswith("/"):  # an absolute path of the docs: the same name here
            text = text.replace(tls[key], Path(tls[key]).name)
            tls[key] = Path(tls[key]).name
    shutil.copy(pki.dir / "server.crt", pki.dir / tls["cert_file"])
    shutil.copy(pki.dir / "server.key", pki.dir / tls["key_file"])
    if tls.get("client_ca_file"):
        shutil.copy(pki.dir / "client-ca.pem", pki.dir / tls["client_ca_file"])
    path = write_web_config(pki.dir, text)
    result = subprocess.run([promtool, "check", "web-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    load_web_config(path)  # and this exporter accepts it too


def test_deploy_example_passes_promtool(pki: Pki) -> None:
    _check_with_promtool(pki, (ROOT / "deploy" / "web-config.example.yml").read_text())


def docs_text() -> str:
    """README.md and every docs/*.md, where the examples of a web config and a scrape config live."""
    return "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def test_docs_example_passes_promtool(pki: Pki) -> None:
    text = docs_text()
    blocks = re.findall(r"```yaml\n(# web-config\.yml\n.*?)```", text, re.S)
    assert len(blocks) == 1, "the docs show one ```yaml block starting with '# web-config.yml'"
    _check_with_promtool(pki, blocks[0])


def test_docs_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    text = docs_text()
    blocks = re.findall(r"```yaml\n(scrape_configs:\n.*?)```", text, re.S)
    assert len(blocks) == 1
    job = yaml.safe_load(blocks[0])["scrape_configs"][0]
    assert job["scheme"] == "https" and "basic_auth" in job and "tls_config" in job
    path = tmp_path / "prometheus.yml"
    path.write_text(blocks[0])
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
