"""Basic auth and the extra headers of the web config, as an aiohttp middleware.

Semantics of the exporter-toolkit: with ``basic_auth_users`` set, every request needs
a user and password whose bcrypt hash matches, else 401 with ``WWW-Authenticate``.
An unknown user is checked against a dummy hash of the same cost, so the answer time
does not tell which users exist. A successful check is cached (keyed by an HMAC of
user, hash and password under a per-process random key, so nothing guessable is kept),
so a scrape every 15 s does not cost a bcrypt each time. bcrypt runs in a thread, one
at a time, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import bcrypt
import structlog
from aiohttp import web

from .webconfig import WebConfig, python_limitations

log = structlog.get_logger("exporter.web.auth")

CACHE_SIZE = 100
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def dummy_hash(cost: int) -> bytes:
    """A well-formed bcrypt hash of the given cost that no password matches (salt and digest random)."""
    salt = bcrypt.gensalt(rounds=cost)
    return salt + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(31)).encode()


def parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuth:
    """Checks credentials against the users of a :class:`WebConfig` (re-read on each request, so reloads apply)."""

    def __init__(self, web_config: WebConfig):
        self.web_config = web_config
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = asyncio.Lock()  # one bcrypt at a time, as the toolkit does
        self._dummy: dict[int, bytes] = {}
        self.bcrypt_checks = 0
        self.cache_hits = 0
        self.dummy_checks = 0

    def __repr__(self) -> str:
        return f"BasicAuth(users={len(self.web_config.users)}, cached={len(self._cache)})"

    @property
    def enabled(self) -> bool:
        return bool(self.web_config.users)

    def _dummy_for(self, users: dict[str, str]) -> bytes:
        # The highest cost in use: an unknown user never answers faster than a known one.
        cost = max((int(h[4:6]) for h in users.values()), default=10)
        if cost not in self._dummy:
            self._dummy[cost] = dummy_hash(cost)
        return self._dummy[cost]

    async def check(self, user: str, password: str) -> bool:
        users = self.web_config.users
        hashed = users.get(user)
        known = hashed is not None
        target = hashed.encode() if hashed is not None else self._dummy_for(users)
        key = hmac.new(
            self._key, b"\0".join((user.encode(), target, password.encode("utf-8", "surrogatepass"))), hashlib.sha256
        ).digest()
        if known and key in self._cache:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return True
        async with self._lock:
            ok = await asyncio.to_thread(_checkpw, password.encode("utf-8", "surrogatepass"), target)
        self.bcrypt_checks += 1
        if not known:
            self.dummy_checks += 1
            return False
        if ok:
            self._cache[key] = None
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a malformed hash; load_web_config lets none through
        return False


def security_middleware(web_config: WebConfig, *, open_paths: Iterable[str] = ()) -> tuple[Middleware, BasicAuth]:
    """The middleware adding the configured headers to every answer and checking basic auth.

    ``open_paths`` are served without credentials (``/healthz`` and ``/readyz`` for
    kubelet probes, with ``--web.health-unauthenticated``); the headers still apply.
    """
    auth = BasicAuth(web_config)
    unauthenticated = frozenset(open_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = web_config.headers
        if auth.enabled and request.path not in unauthenticated:
            credentials = parse_basic(request.headers.get("Authorization", ""))
            if credentials is None or not await auth.check(*credentials):
                denied = web.Response(status=401, text="Unauthorized\n")
                denied.headers["WWW-Authenticate"] = "Basic"
                denied.headers.update(headers)
                return denied
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return middleware, auth


def serving_options(
    web_config: WebConfig | None, *, health_unauthenticated: bool = False
) -> tuple[list[Middleware], ssl.SSLContext | None, BasicAuth | None]:
    """What the HTTP server needs from a web config: middlewares, SSL context, and the authenticator."""
    if web_config is None:
        return [], None, None
    open_paths = ("/healthz", "/readyz") if health_unauthenticated else ()
    middleware, auth = security_middleware(web_config, open_paths=open_paths)
    tls = web_config.model.tls_server_config
    notes = python_limitations(tls) if tls.enabled else []
    if notes:
        log.warning(
            "web_config_not_fully_honoured",
            settings="; ".join(notes),
            see="docs/security.md#what-pythons-ssl-module-can-honour",
        )
    if web_config.model.http_server_config.http2 and tls.enabled:
        log.debug("http2_not_served", reason="aiohttp serves HTTP/1.1 only")
    if not auth.enabled and not tls.enabled:
        log.warning("web_config_without_tls_or_auth", file=str(web_config.path))
    return [middleware], web_config.ssl_context, auth
