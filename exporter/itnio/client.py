"""The signed HTTP client for the ITNIO voice API.

One keep-alive :class:`aiohttp.ClientSession` for the life of the client; every
request gets a fresh ``Timestamp`` and ``Sign``; every request that is sent is
reported to the :class:`RequestObserver` exactly once, with at most one
error kind. The secret and the Sign header are never put in an exception or a log.

Memory: an answer costs at most ``api.max_response_bytes``, counted after decompression
(gzip and deflate are inflated here, in steps bounded by what is left of that cap, so a
gzip bomb stops at the cap). A failed request's ApiError holds no reference cycle: no
frame it passes through keeps it (or an exception it replaced) in a local, so it is freed
by reference counting with the body its frames hold, as soon as its catcher drops it
(callers keep :meth:`ApiError.summary`, not the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, tzinfo
from typing import Any, Protocol, TypeVar

import aiohttp
import aiohttp.helpers
import structlog
import yarl

from .. import __version__
from ..config import Credentials, redact_url, redact_urls
from ..text import cap
from .decoding import UNREADABLE_NODE, Reader, parse_balance, parse_call_stats, parse_flow_detail, parse_flow_page
from .endpoints import DEFAULT_BALANCE_PATH, GET_BALANCE, GROUP_CALL_DETAIL, QUERY_DETAIL, QUERY_PAGE
from .endpoints import path as endpoint_path
from .errors import ApiError, ErrorKind, NotSent
from .model import MAX_ANSWER_BYTES, Answer, Balance, CallStats, FlowDetail, FlowPage
from .ratelimit import TokenBucket
from .signing import signed_headers

log = structlog.get_logger("exporter.itnio.client")

USER_AGENT = f"itnio-exporter/{__version__}"
T = TypeVar("T", FlowDetail, FlowPage, CallStats, Balance)
MAX_DRIFT_LOGGED = 10_000  # (endpoint, subject, field, kind) remembered as logged; then forgotten and logged again
MAX_THROTTLE = 300.0  # never pause longer than this, whatever Retry-After says
OFFLOAD_DECODE_BYTES = 256 * 1024  # answers larger than this are decoded in a worker thread, not on the event loop


class RequestObserver(Protocol):
    """Where the client reports what it sends (the exporter's telemetry implements it)."""

    def observe(self, endpoint: str, seconds: float, error: ApiError | None) -> None:
        """One request was sent and ended, with this outcome (None: success)."""

    def retried(self, endpoint: str) -> None:
        """A failed request is about to be sent again."""

    def clock_offset_learnt(self, seconds: float) -> None:
        """Requests are now signed with the local clock plus ``seconds`` (after a -16 answer)."""

    def drifted(self, endpoint: str, field: str, kind: str) -> None:
        """An answer that was used deviated from the documented types (exporter.itnio.decoding)."""


class ItnioClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float,
        max_connections: int,
        max_response_bytes: int,
        telemetry: RequestObserver,
        retries: int = 2,
        correct_clock: bool = True,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random.random,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        max_requests_per_second: float | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.telemetry = telemetry
        self.clock = clock
        self.retries = retries
        # After -16, sign with the clock of the answer's Date header and send once more (off: --api.check).
        self.correct_clock = correct_clock
        self.random = random
        self.backoff_base = min(0.2, timeout / 4)  # full jitter: uniform(0, base * 2**n)
        # An attempt with less time than this left would only time out: it is not sent.
        self.min_attempt = min(timeout / 4, 1.0)
        self._clock_offset = 0.0  # vendor clock minus ours, learnt from -16 answers
        self._not_before = 0.0  # time.monotonic() before which nothing is sent (429, -15)
        self._throttle_step = 0.0
        self._slots = asyncio.Semaphore(max_connections)
        self._drift_logged: set[tuple[str, int | None, str, str]] = set()
        # api.max_requests_per_second: every attempt sent takes a token (None: no cap).
        self._bucket = TokenBucket(max_requests_per_second) if max_requests_per_second else None
        # The environment's proxy is looked up once here, not per request: aiohttp's
        # trust_env costs two thread-pool round trips per request (proxy and ~/.netrc).
        self._proxy, self._proxy_auth = (proxy, None) if proxy else _env_proxy(self.base_url)
        self._session = aiohttp.ClientSession(
            # ssl=True: verified against the system CAs when no context is given.
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300, ssl=ssl_context or True),
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            # Inflated by _read_limited, within max_response_bytes (aiohttp before 3.13.3 inflates
            # a whole network read at once: a gzip bomb).
            auto_decompress=False,
            # The whole request, body included, is bounded by asyncio.timeout() in _attempt.
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def __repr__(self) -> str:
        return f"ItnioClient(base_url={redact_url(self.base_url)!r}, api_key={self._credentials.api_key!r})"

    def use_credentials(self, credentials: Credentials) -> None:
        """Sign the next requests with ``credentials`` (a rotated secret, a reloaded config);
        a request already signed is sent as it is."""
        self._credentials = credentials

    @property
    def clock_offset(self) -> float:
        """Seconds the vendor's clock is ahead of ours, learnt from -16 answers; requests are signed with it."""
        return self._clock_offset

    async def close(self) -> None:
        await self._session.close()

    async def query_detail(
        self, key_id: int, deadline: float | None = None, may_send: Callable[[], str | None] | None = None
    ) -> FlowDetail:
        """One recall flow, decoded. Raises ApiError on failure, NotSent if nothing was sent.

        ``deadline`` (time.monotonic()) bounds all attempts and waits; None means no bound
        beyond api.timeout per attempt. ``may_send`` is asked just before each attempt is
        sent; a reason it returns stops the call with NotSent.
        """
        return await self._call(QUERY_DETAIL, {"keyId": key_id}, parse_flow_detail, deadline, may_send)

    async def query_page(
        self,
        current: int,
        size: int,
        params: dict[str, Any],
        zone: tzinfo = UTC,
        deadline: float | None = None,
    ) -> FlowPage:
        """One page of the flow list (recallFlow/queryPage); times in ``params`` are in ``zone``."""
        payload = {"current": current, "size": size, "params": params}
        return await self._call(
            QUERY_PAGE, payload, lambda body, reader: parse_flow_page(body, zone, reader, size), deadline
        )

    async def group_call_detail(
        self, task_id: int, deadline: float | None = None, may_send: Callable[[], str | None] | None = None
    ) -> CallStats:
        """The call counts of one group-call task (a node's taskId): a signed GET."""
        return await self._call(
            GROUP_CALL_DETAIL, {}, parse_call_stats, deadline, may_send,
            path=endpoint_path(f"{GROUP_CALL_DETAIL}/{task_id}"),
        )

    async def get_balance(self, path: str = DEFAULT_BALANCE_PATH, deadline: float | None = None) -> Balance:
        """The account's balance: a signed GET of ``path`` under the base URL (balance.path, not under
        /voice/), counted under the endpoint ``getBalance`` whatever the path."""
        return await self._call(GET_BALANCE, {}, parse_balance, deadline, path=path)

    async def _call(
        self,
        endpoint: str,
        payload: dict[str, Any],
        parse: Callable[[Any, Reader], T],
        deadline: float | None,
        may_send: Callable[[], str | None] | None = None,
        path: str | None = None,
    ) -> T:
        """Send a request, retrying what is worth retrying, never past ``deadline``.

        At most max_connections attempts are in flight at once. A retry queues again behind
        the requests already waiting and sleeps its back-off holding no slot, so a failing
        flow never holds up the others for more than one api.timeout.
        """
        end = math.inf if deadline is None else deadline
        retries, skew_corrected = 0, False
        while True:
            await self._wait_for_throttle(end)
            async with self._slot(end):
                reason = may_send() if may_send is not None else None
                if reason:
                    raise NotSent(reason)
                # A token is taken only for an attempt that will have at least min_attempt to run.
                if end - time.monotonic() < self.min_attempt:
                    raise NotSent("too little of the cycle left to send a request")
                if self._bucket is not None and not await self._bucket.acquire(end - self.min_attempt):
                    raise NotSent("api.max_requests_per_second leaves no request before the cycle's deadline")
                budget = min(self.timeout, end - time.monotonic())
                try:
                    result = await self._attempt(endpoint, payload, parse, budget, path)
                except ApiError as failure:
                    # Decided here, so that no local outlives the except clause holding the
                    # error (a cycle through this frame, in the error's traceback).
                    self._react(failure)
                    if (self.correct_clock and failure.is_clock_skew() and not skew_corrected
                            and failure.server_time is not None):
                        # Sign with the vendor's idea of the time and try once more.
                        skew_corrected = True
                        self._clock_offset = failure.server_time - self.clock()
                        self.telemetry.clock_offset_learnt(self._clock_offset)
                        log.warning("clock_skew_corrected", offset_seconds=round(self._clock_offset, 1))
                        delay = 0.0
                    elif failure.is_retryable() and retries < self.retries:
                        delay = self.backoff_base * 2**retries * self.random()
                        if failure.retry_after is not None:
                            delay = max(delay, failure.retry_after)
                        retries += 1
                    else:
                        raise
                    if time.monotonic() + delay + self.min_attempt > end:
                        raise
                else:
                    self._throttle_step = 0.0
                    return result
            self.telemetry.retried(endpoint)
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _slot(self, end: float) -> AsyncIterator[None]:
        """One of max_connections places for a request in flight, waited for until ``end``."""
        if self._slots.locked():  # only then is there a wait worth bounding
            try:
                async with asyncio.timeout(None if end == math.inf else end - time.monotonic()):
                    await self._slots.acquire()
            except TimeoutError:
                raise NotSent("no free request slot before the cycle's deadline") from None
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _wait_for_throttle(self, end: float) -> None:
        pause = self._not_before - time.monotonic()
        if pause > 0:
            if time.monotonic() + pause >= end:
                raise NotSent("throttled by the API (429 or -15) until after the cycle's deadline")
            await asyncio.sleep(pause)

    def _react(self, error: ApiError) -> None:
        """Slow down after 429 or -15: no request at all until the pause is over."""
        if not error.is_throttle():
            return
        self._throttle_step = min(MAX_THROTTLE, max(1.0, 2 * self._throttle_step))
        pause = error.retry_after if error.retry_after is not None else self._throttle_step
        self._not_before = max(self._not_before, time.monotonic() + min(pause, MAX_THROTTLE))
        log.warning("throttled", kind=error.kind.value, code=error.code, pause_seconds=round(pause, 3))

    async def _attempt(
        self, endpoint: str, payload: dict[str, Any], parse: Callable[[Any, Reader], T], budget: float, path: str | None = None
    ) -> T:
        """Send one signed request and return ``parse`` of its JSON body, with the :class:`Answer` attached.

        A POST of ``payload`` to ``endpoint`` (under /voice/), or, when ``path`` (a URL path under
        the base URL) is given, a GET of that path (counted under ``endpoint``, so that ids in the
        path never become label values).
        Every failure (transport, HTTP, JSON, envelope or shape) raises ApiError, and the
        request is reported to telemetry exactly once, with that one error. An answer that
        was received rides on the result or the error (``.answer``); the drift of an answer
        that was used is reported and logged (once per flow, field and kind).
        """
        url = self.base_url + (path if path is not None else endpoint_path(endpoint))
        creds = self._credentials
        sent_at = self.clock()
        headers = signed_headers(creds.api_key, creds.secret(), int(sent_at + self._clock_offset))
        started = time.monotonic()
        error: ApiError | None = None
        server_time = retry_after = None
        answer: Answer | None = None
        try:
            try:
                async with asyncio.timeout(budget):
                    async with self._session.request(
                        "GET" if path else "POST",
                        url,
                        data=None if path else json.dumps(payload),
                        # No redirects: the signing headers must not follow a 3xx to another host.
                        headers=headers,
                        allow_redirects=False,
                        proxy=self._proxy,
                        proxy_auth=self._proxy_auth,
                    ) as response:
                        if response.status != 200:
                            server_time = _http_date(response.headers.get("Date"))
                            retry_after = _retry_after(response.headers.get("Retry-After"), server_time)
                            answer = Answer(sent_at + time.monotonic() - started, response.status, b"", 0,
                                            date=response.headers.get("Date"))
                            raise ApiError(ErrorKind.HTTP, str(response.status), response.reason or "")
                        raw = await self._read_limited(response)
                reader = Reader(endpoint)
                answer = Answer(sent_at + time.monotonic() - started, 200, raw[:MAX_ANSWER_BYTES], len(raw),
                                date=response.headers.get("Date"))
                try:
                    # A large answer (thousands of nodes) takes a thread: decoding 8 MiB costs ~0.4 s.
                    result = await asyncio.to_thread(_decode, raw, parse, reader) if len(raw) > OFFLOAD_DECODE_BYTES \
                        else _decode(raw, parse, reader)
                except ApiError as exc:
                    # The answer's Date is needed only to correct the clock (-16): parse it then.
                    if exc.is_clock_skew():
                        server_time = _http_date(response.headers.get("Date"))
                    raise
                finally:
                    answer = replace(answer, envelope=reader.envelope, drift=reader.drift)
                self._report_drift(endpoint, payload.get("keyId"), answer)
                return replace(result, answer=answer)
            except ApiError as exc:
                exc.note_answer(server_time, retry_after, answer)
                error = exc
                raise
            except TimeoutError:
                error = ApiError(ErrorKind.TIMEOUT, "", f"no answer within {budget:.3g}s")
            except (aiohttp.ClientError, OSError) as exc:
                error = ApiError(ErrorKind.NETWORK, "", _describe(exc))
            # Raised here, not in the except clause: the exception it replaces would be its
            # __context__, and that one's traceback holds this frame, which holds the error.
            raise error  # set by the except clause that was taken
        finally:
            self.telemetry.observe(endpoint, time.monotonic() - started, error)
            # This frame stays in the error's traceback: it must not hold the error (a cycle).
            error = None

    def _report_drift(self, endpoint: str, key_id: int | None, answer: Answer) -> None:
        """Count the drift of an answer that was used; log each (flow, field, kind) the first time only."""
        for item in answer.drift:
            self.telemetry.drifted(endpoint, item.field, item.kind)
            mark = (endpoint, key_id, item.field, item.kind)
            if mark in self._drift_logged:
                continue
            if len(self._drift_logged) >= MAX_DRIFT_LOGGED:
                self._drift_logged.clear()
            self._drift_logged.add(mark)
            about = {} if key_id is None else {"key_id": key_id}
            (log.warning if item.kind == UNREADABLE_NODE else log.info)(
                "api_schema_drift", endpoint=endpoint, **about, field=item.field, kind=item.kind, detail=item.detail
            )

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, inflated (gzip, deflate): at most max_response_bytes, sent or inflated."""
        limit = self.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ApiError(ErrorKind.DECODE, "", f"response of {response.content_length} bytes exceeds {limit}")
        inflater = _Inflater.for_encoding(response.headers.get("Content-Encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            if inflater is not None:
                chunk = inflater.inflate(chunk, limit - size + 1)  # one byte over the cap is enough to know
            size += len(chunk)
            if size > limit:
                chunks.clear()  # this frame stays in the error's traceback for as long as the error lives
                raise ApiError(ErrorKind.DECODE, "", f"response exceeds {limit} bytes"
                               + (" once inflated" if inflater is not None else ""))
            chunks.append(chunk)
        return b"".join(chunks)


class _Inflater:
    """Inflates a gzip or deflate body in steps that never produce more than asked for."""

    def __init__(self, encoding: str):
        self._encoding = encoding
        self._zlib: Any = None  # chosen at the first byte (deflate may come with or without its zlib header)

    @classmethod
    def for_encoding(cls, header: str) -> _Inflater | None:
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls(encoding)
        raise ApiError(ErrorKind.DECODE, "", f"unsupported Content-Encoding: {cap(encoding, 40)!r}")

    def inflate(self, data: bytes, most: int) -> bytes:
        """At most ``most`` bytes of what ``data`` inflates to; reaching ``most`` means the rest is not wanted."""
        if not data:
            return b""
        if self._zlib is None:
            if self._encoding == "deflate":
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            else:
                wbits = 16 + zlib.MAX_WBITS
            self._zlib = zlib.decompressobj(wbits)
        try:
            return bytes(self._zlib.decompress(data, most))
        except zlib.error:
            pass  # raised below, without the zlib.error as its context
        raise ApiError(ErrorKind.DECODE, "", f"cannot inflate the {self._encoding} body")


def _decode(raw: bytes, parse: Callable[[Any, Reader], T], reader: Reader) -> T:
    """``parse`` of the JSON in ``raw``; every failure an ApiError (the daemon never dies of what it reads).

    The ApiError is raised outside the ``except`` that caught the cause: a JSONDecodeError
    holds the whole document, and would ride along as the ApiError's ``__context__``."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        problem = f"invalid JSON: {type(exc).__name__}"
    else:
        try:
            return parse(body, reader)
        except ApiError:
            raise
        except Exception as exc:
            problem = f"unexpected shape: {type(exc).__name__}"
        del body
    raise ApiError(ErrorKind.DECODE, "", problem)


def _env_proxy(base_url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """HTTPS_PROXY / HTTP_PROXY / ALL_PROXY for ``base_url`` unless NO_PROXY excludes it."""
    try:
        url, auth = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(base_url))
    except LookupError:
        return None, None
    return str(url), auth


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after(value: str | None, server_time: float | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_THROTTLE)
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, min(when - (server_time or time.time()), MAX_THROTTLE))


def _describe(exc: BaseException) -> str:
    """A short description of a transport error that cannot carry request headers."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):  # older aiohttp leaves its os_error unset
        reason = getattr(exc.certificate_error, "verify_message", None) or type(exc.certificate_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: certificate verify failed: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    text = redact_urls(str(exc))  # an InvalidURL or proxy error may carry user:password@
    return type(exc).__name__ + (f": {text}" if text and len(text) < 200 else "")
