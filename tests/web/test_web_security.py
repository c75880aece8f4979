"""Issue 4, serving side: TLS, client certificates, basic auth and headers from a web config.

Real TLS over loopback, with certificates made by trustme in each test.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from exporter import cli
from exporter.config import ConfigError
from exporter.service import Exporter
from exporter.simulator import Simulator
from exporter.web.webconfig import TLS12_CIPHERS, WebConfig, build_ssl_context, load_web_config, validate_web_config
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def write_web_config(directory: Path, text: str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(text)
    return path


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
USERS = f"basic_auth_users:\n  alice: '{HASH}'\n"

Start = Callable[..., Awaitable[Exporter]]


@pytest.fixture
def start(sim: Simulator, make_exporter) -> Start:
    """An exporter serving with the web config at ``web_config_path``."""

    async def factory(web_config_path: Path, **kwargs: Any) -> Exporter:
        options = {"web_config": WebConfig(web_config_path), **kwargs}
        return await make_exporter(sim, run_poller=False, exporter_options=options)

    return factory


async def get(
    url: str, *, ssl_context: ssl.SSLContext | bool | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ssl_context if ssl_context is not None else True, headers=headers or {}) as r:
            await r.read()
            return r.status, dict(r.headers)


async def peer_serial(port: int, context: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


# -- TLS --------------------------------------------------------------------------------------


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


# -- basic auth and headers ---------------------------------------------------------------------


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
    assert exporter.auth is not None
    dummy = exporter.auth._dummy_for(exporter.web_config.users)  # type: ignore[union-attr]
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


# -- validation ---------------------------------------------------------------------------------


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


def _write_exporter_config(directory: Path) -> Path:
    path = directory / "config.yaml"
    path.write_text("api:\n  api_key: k\n  api_secret: s\nflows:\n  - key_id: 1\n")
    return path


def test_cli_invalid_web_config_exits_1_with_one_line(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_exporter_config(pki.dir)
    web = write_web_config(pki.dir, TLS + "  client_auth_type: Sometimes\n")
    for extra in ([], ["--config.check"]):
        assert cli.main(["--config.file", str(config), "--web.config.file", str(web), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tls_server_config.client_auth_type: 'Sometimes' is not one of" in err[0]
    web = write_web_config(pki.dir, TLS + USERS)
    assert cli.main(["--config.file", str(config), "--web.config.file", str(web), "--config.check"]) == 0
    assert "OK (TLS on, 1 users)" in capsys.readouterr().out


# -- the shipped examples pass promtool ---------------------------------------------------------


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
