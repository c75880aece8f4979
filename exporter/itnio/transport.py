"""How the API client reaches the vendor: TLS verification, private CA, proxy.

TLS is verified by default against the system CAs; ``api.tls.ca_file`` trusts only that
CA instead (as ``ca_file`` in Prometheus' tls_config); ``api.tls.insecure_skip_verify``
turns verification off, with a warning at every start and
``itnio_exporter_config_info{tls_insecure_skip_verify="true"}``. ``api.proxy_url`` sets
a proxy; without it, HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment apply.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import structlog

from ..config import ApiConfig, redact_url

log = structlog.get_logger("exporter.itnio.transport")


def client_ssl_context(api: ApiConfig) -> ssl.SSLContext:
    """The TLS context of an ``api:`` section. The system CAs are loaded once per process (it takes
    ~0.1 s, on the event loop), and shared by every account that uses them; a ``ca_file`` is read
    anew for each client, so a renewed one applies to the next client built."""
    tls = api.tls
    if tls.ca_file is None:
        return _system_context(tls.insecure_skip_verify)
    return _context(str(tls.ca_file), tls.insecure_skip_verify)


@functools.cache
def _system_context(insecure: bool) -> ssl.SSLContext:
    return _context(None, insecure)


def _context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def client_transport_options(api: ApiConfig) -> dict[str, Any]:
    """Keyword arguments for :class:`~exporter.itnio.client.ItnioClient`; warns about an unverified vendor."""
    if api.tls.insecure_skip_verify:
        log.warning(
            "tls_verification_disabled",
            message="api.tls.insecure_skip_verify is true: the vendor's certificate is NOT verified, "
            "anyone on the path can read the API key and signed requests",
            base_url=redact_url(api.base_url),
        )
    return {"ssl_context": client_ssl_context(api), "proxy": api.proxy_url}
