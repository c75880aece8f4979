"""The web config file of the Prometheus exporters (prometheus/exporter-toolkit format).

The same ``web-config.yml`` that node_exporter reads (and ``promtool check web-config``
checks) configures TLS, extra HTTP headers and basic auth here::

    tls_server_config:    cert_file, key_file, client_auth_type, client_ca_file,
                          min_version, max_version, cipher_suites, curve_preferences,
                          prefer_server_cipher_suites
    http_server_config:   http2, headers
    basic_auth_users:     {user: bcrypt hash}

:func:`load_web_config` validates the file (unknown keys are errors, as in the toolkit)
and raises :class:`~exporter.config.ConfigError` with one line per problem naming the
field. :class:`WebConfig` is the running form: it owns the one ``ssl.SSLContext`` the
listener uses and refreshes its certificate in place when the files change. A reload
(SIGHUP, ``POST /-/reload``: :mod:`exporter.reload`) loads the file off the event loop and
hands the checked model to :meth:`WebConfig.apply`.

What Python's ssl module cannot do exactly as Go's crypto/tls is listed in
docs/security.md ("What Python's ssl module can honour"); at start, every such setting is named in one warning.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from ..aio import cancel, every
from ..config import ConfigError, FileWatch, parse_yaml, read_text_file, validate_mapping

log = structlog.get_logger("exporter.web.webconfig")

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# The toolkit also accepts this older spelling of RequireAnyClientCert.
CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert", "": "NoClientCert"}

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's cipher suite names (IANA names) -> OpenSSL names, for TLS 1.2 and older.
TLS12_CIPHERS = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are accepted and, as in Go, not configurable.
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# The only headers the toolkit lets a web config set, with their allowed values (None: any).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# $2a$/$2b$/$2y$, cost 4..31, 22 characters of salt and 31 of hash.
BCRYPT_RE = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TLSServerConfig(_Model):
    cert_file: StrictStr = ""
    key_file: StrictStr = ""
    client_auth_type: StrictStr = "NoClientCert"
    client_ca_file: StrictStr = ""
    min_version: StrictStr = "TLS12"
    max_version: StrictStr = "TLS13"
    cipher_suites: list[StrictStr] = Field(default_factory=list)
    curve_preferences: list[StrictStr] = Field(default_factory=list)
    prefer_server_cipher_suites: StrictBool = True

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, value: str) -> str:
        value = CLIENT_AUTH_ALIASES.get(value, value)
        if value not in CLIENT_AUTH_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"{value!r} is not one of {', '.join(TLS_VERSIONS)}")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in TLS12_CIPHERS and name not in TLS13_CIPHERS]
        if unknown:
            raise ValueError(f"unknown cipher suite {unknown[0]!r} (use Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in CURVES]
        if unknown:
            raise ValueError(f"unknown curve {unknown[0]!r} (one of {', '.join(CURVES)})")
        return value

    @property
    def enabled(self) -> bool:
        """As in the toolkit: no cert, key, client auth or client CA means plain HTTP."""
        return bool(self.cert_file or self.key_file or self.client_ca_file or self.client_auth_type != "NoClientCert")


class HTTPServerConfig(_Model):
    http2: StrictBool = True
    headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if name not in ALLOWED_HEADERS:
                raise ValueError(f"header {name!r} can not be configured (only {', '.join(ALLOWED_HEADERS)})")
            allowed = ALLOWED_HEADERS[name]
            if allowed is not None and header_value.lower() not in allowed:
                raise ValueError(f"invalid value for {name}: expected one of {', '.join(allowed)}, got {header_value!r}")
        return value


class WebConfigFile(_Model):
    tls_server_config: TLSServerConfig = TLSServerConfig()
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    # repr=False: password hashes are secrets too (offline guessing).
    basic_auth_users: dict[StrictStr, StrictStr] = Field(default_factory=dict, repr=False)

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not BCRYPT_RE.match(hashed):
                # Never echo the hash: say what is wrong with it, not what it is.
                raise ValueError(f"the password of user {user!r} is not a bcrypt hash ($2a$, $2b$ or $2y$, cost 4-31)")
        return value

    @model_validator(mode="after")
    def _tls_checks(self) -> WebConfigFile:
        tls = self.tls_server_config
        problems = []
        if tls.enabled:
            if not tls.cert_file:
                problems.append("tls_server_config.cert_file: required when TLS is configured")
            if not tls.key_file:
                problems.append("tls_server_config.key_file: required when TLS is configured")
        if tls.client_ca_file and tls.client_auth_type == "NoClientCert":
            problems.append("tls_server_config.client_ca_file: set without a client_auth_type that asks for a certificate")
        if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
            problems.append(f"tls_server_config.min_version: {tls.min_version} is above max_version {tls.max_version}")
        if problems:
            raise ConfigError(problems)
        return self


def _resolve(base: Path, name: str) -> str:
    """Relative paths are relative to the web config file, as in the toolkit."""
    return str(base / name) if name and not os.path.isabs(name) else name


def validate_web_config(raw: Any, base_dir: Path = Path(".")) -> WebConfigFile:
    """Validate a parsed web config; file paths are resolved against ``base_dir``."""
    model = validate_mapping(
        WebConfigFile, raw, "web config", hide_input=lambda loc: loc[:1] == ("basic_auth_users",)  # no hash back
    )
    tls = model.tls_server_config
    if tls.enabled:
        tls = tls.model_copy(
            update={
                "cert_file": _resolve(base_dir, tls.cert_file),
                "key_file": _resolve(base_dir, tls.key_file),
                "client_ca_file": _resolve(base_dir, tls.client_ca_file),
            }
        )
        model = model.model_copy(update={"tls_server_config": tls})
        # Load everything once now, so that a bad file stops the start with its field named.
        build_ssl_context(tls)
    return model


def load_web_config(path: str | Path) -> WebConfigFile:
    """Read, parse and validate a web config file. Raises ConfigError (lines prefixed with the file)."""
    path = Path(path)
    text = read_text_file(path)
    try:
        return validate_web_config(parse_yaml(text, str(path)), path.parent)
    except ConfigError as exc:
        raise ConfigError([p if p.startswith(str(path)) else f"{path}: {p}" for p in exc.problems]) from None


# -- TLS --------------------------------------------------------------------------------------


def _load_cert_chain(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except FileNotFoundError as exc:
        field = "cert_file" if exc.filename == tls.cert_file or not os.path.exists(tls.cert_file) else "key_file"
        raise ConfigError([f"tls_server_config.{field}: {exc.filename or getattr(tls, field)}: no such file"]) from None
    except OSError as exc:  # ssl.SSLError is an OSError
        for field in ("cert_file", "key_file"):
            if not os.access(getattr(tls, field), os.R_OK):
                raise ConfigError([f"tls_server_config.{field}: {getattr(tls, field)}: cannot read"]) from None
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(
            [
                f"tls_server_config.cert_file: {tls.cert_file} and key_file {tls.key_file} "
                f"are not a matching PEM certificate and key ({reason})"
            ]
        ) from None


def build_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server SSLContext honouring what Python's ssl can of ``tls``. Raises ConfigError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [TLS12_CIPHERS[name] for name in tls.cipher_suites if name in TLS12_CIPHERS]
    if tls12:
        available = []
        for name in tls12:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(name)
                available.append(name)
            except ssl.SSLError:
                pass
        if not available:
            raise ConfigError(["tls_server_config.cipher_suites: none of these TLS 1.2 suites is available in this OpenSSL"])
        context.set_ciphers(":".join(available))
    _load_cert_chain(context, tls)
    mode = tls.client_auth_type
    if mode != "NoClientCert":
        # Python's ssl verifies every client certificate it gets: it cannot ask for one and
        # accept it unverified (RequestClientCert, RequireAnyClientCert), see docs/security.md.
        context.verify_mode = (
            ssl.CERT_REQUIRED if mode in ("RequireAnyClientCert", "RequireAndVerifyClientCert") else ssl.CERT_OPTIONAL
        )
        if tls.client_ca_file:
            try:
                context.load_verify_locations(cafile=tls.client_ca_file)
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
                raise ConfigError([f"tls_server_config.client_ca_file: cannot load {tls.client_ca_file}: {reason}"]) from None
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go uses the system roots then
    return context


def python_limitations(tls: TLSServerConfig) -> list[str]:
    """The settings of ``tls`` that Python's ssl module does not honour as Go would."""
    notes = []
    if tls.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
        notes.append(f"client_auth_type {tls.client_auth_type}: client certificates are verified too")
    if any(name in TLS13_CIPHERS for name in tls.cipher_suites):
        notes.append("cipher_suites: TLS 1.3 suites are not configurable (as in Go)")
    if tls.curve_preferences:
        notes.append("curve_preferences: ignored, OpenSSL's default groups are used")
    return notes


class WebConfig:
    """The running web config: TLS context (fixed object, renewable certificate), headers, users.

    ``ssl_context`` is the one context given to the listener; a renewed certificate is
    loaded into that same object (``load_cert_chain`` again), which new handshakes use.
    """

    def __init__(self, path: str | Path, model: WebConfigFile | None = None, *, watch_interval: float = 30.0):
        self.path = Path(path)
        self.watch_interval = watch_interval
        self.model = model if model is not None else load_web_config(self.path)
        tls = self.model.tls_server_config
        self.tls_enabled = tls.enabled
        self.ssl_context: ssl.SSLContext | None = build_ssl_context(tls) if tls.enabled else None
        self._certificates = self._watch_certificates()
        self._watch_task: asyncio.Task[None] | None = None
        self.reloads = 0

    def __repr__(self) -> str:
        return f"WebConfig(path={str(self.path)!r}, tls={self.tls_enabled}, users={len(self.users)})"

    @property
    def users(self) -> dict[str, str]:
        return self.model.basic_auth_users

    @property
    def headers(self) -> dict[str, str]:
        return self.model.http_server_config.headers

    def _watch_certificates(self) -> FileWatch | None:
        """A watch on the certificate and key files (None without TLS). Stats them: blocks, briefly."""
        tls = self.model.tls_server_config
        return FileWatch(tls.cert_file, tls.key_file) if tls.enabled else None

    async def areload(self) -> None:
        """Re-read the file (in a thread): new users and headers, and a renewed certificate into the
        same context. On any error the running config is kept and ConfigError is raised. TLS cannot
        be switched on or off, and client CAs can only be added, without a restart."""
        self.apply(await asyncio.to_thread(load_web_config, self.path))

    def apply(self, model: WebConfigFile) -> None:
        """Take a loaded and checked model; ConfigError (nothing changed) if it needs a restart."""
        tls = model.tls_server_config
        if tls.enabled != self.tls_enabled:
            raise ConfigError([f"{self.path}: tls_server_config: switching TLS on or off needs a restart"])
        if self.ssl_context is not None:
            old = self.model.tls_server_config
            if (tls.client_auth_type, tls.min_version, tls.max_version, tls.cipher_suites) != (
                old.client_auth_type,
                old.min_version,
                old.max_version,
                old.cipher_suites,
            ):
                log.warning("web_config_reload_partial", reason="TLS settings other than certificates need a restart")
            # Already loaded once by load_web_config; on the loop thread, where handshakes run.
            self.ssl_context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file:
                self.ssl_context.load_verify_locations(cafile=tls.client_ca_file)
        self.model = model
        self._certificates = self._watch_certificates()
        self.reloads += 1
        log.info("web_config_reloaded", users=len(model.basic_auth_users))

    async def check_certificates(self) -> bool:
        """Reload the certificate if its files changed; True when it did. Never blocks the loop."""
        watch = self._certificates
        if self.ssl_context is None or watch is None:
            return False
        change = await asyncio.to_thread(watch.check)
        if change is None:
            return False
        tls = self.model.tls_server_config
        try:
            # Try the pair on a scratch context first: a half-renewed pair (new cert, old key)
            # must not replace a working one. Retried on the next check.
            await asyncio.to_thread(_load_cert_chain, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)
        except ConfigError as exc:
            log.warning("certificate_reload_failed", problem=exc.problems[0])
            return False
        if watch is not self._certificates:
            return False  # a reload applied other files meanwhile: these must not replace them
        self.ssl_context.load_cert_chain(tls.cert_file, tls.key_file)
        watch.accept(change)
        self.reloads += 1
        log.info("certificate_reloaded", cert_file=tls.cert_file)
        return True

    def start_watching(self, interval: float | None = None) -> None:
        """Check the certificate files every ``interval`` (default ``watch_interval``) seconds."""
        if self.ssl_context is None or self._watch_task is not None:
            return
        interval = interval or self.watch_interval

        self._watch_task = asyncio.create_task(
            every(lambda: interval, self.check_certificates, log=log, failed="certificate_check_failed",
                  first_after=interval),
            name="certificate-watch",
        )

    async def stop_watching(self) -> None:
        await cancel(self._watch_task)
        self._watch_task = None
