"""The signed HTTP client for the ITNIO voice API.

One keep-alive :class:`aiohttp.ClientSession` for the life of the client; every
request gets a fresh ``Timestamp`` and ``Sign``; every request that is sent is
reported to :class:`~exporter.telemetry.Telemetry` exactly once, with at most one
error kind. The secret and the Sign header are never put in an exception or a log.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import structlog

from . import __version__
from .config import Credentials
from .model import ApiError, ErrorKind, FlowDetail, parse_flow_detail
from .signing import signed_headers
from .telemetry import QUERY_DETAIL, Telemetry

log = structlog.get_logger("exporter.client")

USER_AGENT = f"itnio-exporter/{__version__}"
T = TypeVar("T")


class ItnioClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float,
        max_connections: int,
        max_response_bytes: int,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.telemetry = telemetry
        self.clock = clock
        self.proxy = proxy  # None: HTTPS_PROXY / NO_PROXY from the environment (trust_env)
        self._session = aiohttp.ClientSession(
            # ssl=True: verified against the system CAs when no context is given.
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300, ssl=ssl_context or True),
            trust_env=True,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            # The whole request, body included, is bounded by asyncio.timeout() in _post.
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def __repr__(self) -> str:
        return f"ItnioClient(base_url={self.base_url!r}, api_key={self.credentials.api_key!r})"

    async def close(self) -> None:
        await self._session.close()

    async def query_detail(self, key_id: int) -> FlowDetail:
        """One recall flow, decoded. Raises ApiError on any failure."""
        return await self._post(QUERY_DETAIL, {"keyId": key_id}, parse_flow_detail)

    async def _post(self, endpoint: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """Send one signed POST and return ``parse`` of its JSON body.

        Every failure (transport, HTTP, JSON, envelope or shape) raises ApiError, and the
        request is reported to telemetry exactly once, with that one error.
        """
        url = f"{self.base_url}/voice/{endpoint}"
        creds = self.credentials
        headers = signed_headers(creds.api_key, creds.secret(), int(self.clock()))
        started = time.monotonic()
        error: ApiError | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(
                    # No redirects: the signing headers must not follow a 3xx to another host.
                    url, data=json.dumps(payload), headers=headers, allow_redirects=False, proxy=self.proxy
                ) as response:
                    raw = await self._read_limited(response)
                    if response.status != 200:
                        raise ApiError(ErrorKind.HTTP, str(response.status), response.reason or "")
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise ApiError(ErrorKind.DECODE, "", f"invalid JSON: {type(exc).__name__}") from None
            try:
                return parse(body)
            except ApiError:
                raise
            except Exception as exc:  # the daemon never dies of what it reads
                raise ApiError(ErrorKind.DECODE, "", f"unexpected shape: {type(exc).__name__}") from None
        except ApiError as exc:
            error = exc
            raise
        except TimeoutError:
            error = ApiError(ErrorKind.TIMEOUT, "", f"no answer within {self.timeout}s")
            raise error from None
        except (aiohttp.ClientError, OSError) as exc:
            error = ApiError(ErrorKind.NETWORK, "", _describe(exc))
            raise error from None
        finally:
            self.telemetry.observe(endpoint, time.monotonic() - started, error)

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ApiError(ErrorKind.DECODE, "", f"response of {response.content_length} bytes exceeds {limit}")
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise ApiError(ErrorKind.DECODE, "", f"response exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """A short description of a transport error that cannot carry request headers."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return type(exc).__name__ + (f": {exc}" if str(exc) and len(str(exc)) < 200 else "")
