"""Basic auth and the extra headers of the web config, as an aiohttp middleware.

Semantics of the exporter-toolkit: with ``basic_auth_users`` set, every request needs
a user and password whose bcrypt hash matches, else 401 with ``WWW-Authenticate``.
Passwords are compared as Go's bcrypt does: only their first 72 bytes count.
An unknown user is checked against a dummy hash of the same cost, so the answer time
does not tell which users exist.

bcrypt is slow on purpose, so who may spend it is bounded (docs/security.md, "Floods of
wrong passwords"): a successful check is cached, and so is a failed one (each keyed by
an HMAC of user, hash and password under a per-process random key, so nothing guessable
is kept); identical checks in flight share one bcrypt; at most :data:`MAX_PENDING` checks
wait or run at once, at most :data:`PER_SOURCE` from one client address (an IPv6 /64),
and :data:`WORKERS` run in threads at a time, never on the event loop. A check beyond
those bounds is answered at once with 429 and ``Retry-After``. A check whose client has
gone away before its bcrypt started is dropped; one already running finishes (a thread
cannot be stopped), still holding its place, and its result is cached.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import os
import secrets
import ssl
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable

import bcrypt
import structlog
from aiohttp import web

from ..logs import RateLimitedLog
from ..metrics.telemetry import AUTH_FAILURE_REASONS
from .webconfig import WebConfig, python_limitations

log = structlog.get_logger("exporter.web.auth")

CACHE_SIZE = 100
FAILURE_CACHE_SIZE = 1000
MAX_PENDING = 4
PER_SOURCE = 1
WORKERS = 2
BCRYPT_MAX_BYTES = 72  # what Go's bcrypt (and the algorithm) reads of a password
RETRY_AFTER = 1
FAILURE_LOG_INTERVAL = 60.0
# The reason label of itnio_exporter_http_auth_failures_total: named once, where its series are created.
MISSING, MALFORMED, UNKNOWN_USER, WRONG_PASSWORD, REJECTED_BUSY = AUTH_FAILURE_REASONS
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


class Verdict(enum.Enum):
    OK = "ok"
    DENIED = "denied"
    BUSY = "busy"


def source_of(remote: str | None) -> str:
    """The fairness key of a client address: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class _Check:
    """One bcrypt wanted by one or more requests with the same credentials."""

    def __init__(self, source: str):
        self.source = source
        self.waiters = 0
        self.started = False
        self.task: asyncio.Task[bool] | None = None

    def run(self, coro: Coroutine[None, None, bool]) -> None:
        self.task = asyncio.ensure_future(coro)

    def wanted(self) -> None:
        self.waiters += 1

    def unwanted(self) -> None:
        """One requester is gone; with none left and no bcrypt begun, drop the check."""
        self.waiters -= 1
        if not self.waiters and not self.started and self.task is not None:
            self.task.cancel()

    def begin(self) -> None:
        self.started = True


class BasicAuth:
    """Checks credentials against the users of a :class:`WebConfig` (re-read on each request, so reloads apply)."""

    def __init__(
        self,
        web_config: WebConfig,
        *,
        on_failure: Callable[[str], None] | None = None,
        max_pending: int = MAX_PENDING,
        per_source: int = PER_SOURCE,
        workers: int = WORKERS,
    ):
        self.web_config = web_config
        self.on_failure = on_failure
        self.max_pending = max_pending
        self.per_source = per_source
        # One http_auth_failed line at once, then at most one a minute: count, reasons, the last client.
        self.failures = RateLimitedLog(log, interval=FAILURE_LOG_INTERVAL, tally="reason", flush=True)
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._inflight: dict[bytes, _Check] = {}
        self._pending: Counter[str] = Counter()
        self._workers = asyncio.Semaphore(workers)
        self._dummy: dict[int, bytes] = {}
        self.bcrypt_checks = 0
        self.cache_hits = 0
        self.dummy_checks = 0
        self.failure_cache_hits = 0

    def __repr__(self) -> str:
        return f"BasicAuth(users={len(self.web_config.users)}, cached={len(self._cache)})"

    @property
    def enabled(self) -> bool:
        return bool(self.web_config.users)

    @property
    def pending(self) -> int:
        """bcrypt checks waiting or running."""
        return sum(self._pending.values())

    def _dummy_for(self, users: dict[str, str]) -> bytes:
        # The highest cost in use: an unknown user never answers faster than a known one.
        cost = max((int(h[4:6]) for h in users.values()), default=10)
        if cost not in self._dummy:
            self._dummy[cost] = dummy_hash(cost)
        return self._dummy[cost]

    def failed(self, reason: str, *, user: str | None = None, remote: str | None = None) -> None:
        """Count and (rate-limited) log one refused request."""
        if self.on_failure is not None:
            self.on_failure(reason)
        last_user = {"last_user": user[:64]} if user is not None else {}
        self.failures.log("http_auth_failed", reason=reason, last_remote=remote or "", **last_user)

    async def check(self, user: str, password: str, remote: str | None = None) -> Verdict:
        users = self.web_config.users
        hashed = users.get(user)
        known = hashed is not None
        target = hashed.encode() if hashed is not None else self._dummy_for(users)
        secret = password.encode("utf-8", "surrogatepass")
        key = hmac.new(self._key, b"\0".join((user.encode("utf-8", "surrogatepass"), target, secret)), hashlib.sha256).digest()
        reason = WRONG_PASSWORD if known else UNKNOWN_USER
        named = user if known else None  # a name as typed may be a misplaced password: never logged
        if known and key in self._cache:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return Verdict.OK
        if key in self._failed:
            self._failed.move_to_end(key)
            self.failure_cache_hits += 1
            self.failed(reason, user=named, remote=remote)
            return Verdict.DENIED
        check = self._inflight.get(key)
        if check is None:
            source = source_of(remote)
            if self.pending >= self.max_pending or self._pending[source] >= self.per_source:
                self.failed(REJECTED_BUSY, user=named, remote=remote)
                return Verdict.BUSY
            check = _Check(source)
            self._pending[source] += 1
            self._inflight[key] = check
            check.run(self._run(check, key, secret[:BCRYPT_MAX_BYTES], target, known))
        assert check.task is not None
        check.wanted()
        try:
            ok = await asyncio.shield(check.task)
        finally:
            check.unwanted()
        if ok and known:
            return Verdict.OK
        self.failed(reason, user=named, remote=remote)
        return Verdict.DENIED

    async def _run(self, check: _Check, key: bytes, secret: bytes, target: bytes, known: bool) -> bool:
        try:
            async with self._workers:
                check.begin()
                ok = await asyncio.to_thread(_checkpw, secret, target)
        finally:
            self._inflight.pop(key, None)
            self._pending[check.source] -= 1
            if self._pending[check.source] <= 0:
                del self._pending[check.source]
        self.bcrypt_checks += 1
        if not known:
            self.dummy_checks += 1
        if ok and known:
            self._cache[key] = None
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return True
        self._failed[key] = None
        while len(self._failed) > FAILURE_CACHE_SIZE:
            self._failed.popitem(last=False)
        return False


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a malformed hash; load_web_config lets none through
        return False


def security_middleware(
    web_config: WebConfig, *, open_paths: Iterable[str] = (), on_failure: Callable[[str], None] | None = None
) -> tuple[Middleware, BasicAuth]:
    """The middleware adding the configured headers to every answer and checking basic auth.

    ``open_paths`` are served without credentials (``/healthz`` and ``/readyz`` for
    kubelet probes, with ``--web.health-unauthenticated``); the headers still apply.
    ``on_failure`` is told the reason of every refused request (for a counter).
    """
    auth = BasicAuth(web_config, on_failure=on_failure)
    unauthenticated = frozenset(open_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = web_config.headers
        if auth.enabled and request.path not in unauthenticated:
            header = request.headers.get("Authorization")
            credentials = parse_basic(header or "")
            if credentials is None:
                auth.failed(MISSING if header is None else MALFORMED, remote=request.remote)
                verdict = Verdict.DENIED
            else:
                verdict = await auth.check(*credentials, remote=request.remote)
            if verdict is Verdict.BUSY:
                busy = web.Response(status=429, text="Too many logins being checked; retry\n")
                busy.headers["Retry-After"] = str(RETRY_AFTER)
                busy.headers.update(headers)
                return busy
            if verdict is not Verdict.OK:
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
    web_config: WebConfig | None,
    *,
    health_unauthenticated: bool = False,
    on_failure: Callable[[str], None] | None = None,
) -> tuple[list[Middleware], ssl.SSLContext | None, BasicAuth | None]:
    """What the HTTP server needs from a web config: middlewares, SSL context, and the authenticator."""
    if web_config is None:
        return [], None, None
    open_paths = ("/healthz", "/readyz") if health_unauthenticated else ()
    middleware, auth = security_middleware(web_config, open_paths=open_paths, on_failure=on_failure)
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
