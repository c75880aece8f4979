"""The listening side of the HTTP server: what Go's net/http and LimitListener give Prometheus.

aiohttp's sites hand their sockets to asyncio's own accept loop, which has no connection
limit, no deadline for request headers, and logs a multi-line traceback for every failed
``accept()`` (EMFILE when descriptors run out). :class:`Listener` accepts instead:

- at most ``max_connections`` connections are open at once; at the limit it stops
  accepting (new clients wait in the kernel's backlog), as Go's ``netutil.LimitListener``;
- a connection must deliver a request's headers within ``header_timeout`` seconds of
  being accepted, or of the first byte of its next request (Go's ``ReadHeaderTimeout``),
  else it is closed; a TLS handshake gets the same time;
- a failed ``accept()`` is one log line at most every :data:`LOG_INTERVAL` seconds
  (the failures in between are counted, ``suppressed``, on a line written once the
  interval ends), and accepting resumes, after a pause, once descriptors free up; so is
  reaching the connection limit.

Each connection's protocol is aiohttp's own (``runner.server()``), wrapped in a
:class:`_Guard` that only watches it. Whether a request is in progress comes from
:meth:`Listener.middleware`, the outermost middleware of the app.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ..logs import RateLimitedLog

log = structlog.get_logger("exporter.web.listener")

DEFAULT_MAX_CONNECTIONS = 512  # as Prometheus' --web.max-connections
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0  # keep-alive connections without a request are closed after this (aiohttp's keepalive_timeout)
LOG_INTERVAL = 10.0
BACKLOG = 128

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Slot:
    """One of the ``max_connections`` places; released once, whichever way the connection ends."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore = semaphore
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


class _Guard(asyncio.Protocol):
    """Passes everything to aiohttp's protocol; closes the connection when headers are late."""

    def __init__(self, listener: Listener, inner: asyncio.Protocol, slot: _Slot):
        self._listener = listener
        self._inner = inner
        self._slot = slot
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0
        self._data_while_busy = False

    def _arm(self) -> None:
        if self._timer is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._listener.header_timeout, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if self._transport is not None and not self._busy:
            log.debug("http_header_timeout", remote=str(self._transport.get_extra_info("peername")))
            self._transport.abort()

    def request_started(self) -> None:
        self._busy += 1
        self._disarm()

    def request_finished(self) -> None:
        self._busy -= 1
        if not self._busy and self._data_while_busy:
            # Bytes came in while the request was handled: the start of a pipelined request,
            # or a body. Either way, the next request's headers are now due.
            self._data_while_busy = False
            self._arm()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._listener.guards[transport] = self
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._busy:
            self._data_while_busy = True
        else:
            self._arm()  # the first byte of a request starts its clock; later bytes do not reset it
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._transport is not None:
            self._listener.guards.pop(self._transport, None)
        self._transport = None
        self._slot.release()
        self._inner.connection_lost(exc)


class Listener:
    """Listens on ``host:port`` and serves each accepted connection with ``protocol_factory``
    (``runner.server`` of an aiohttp ``AppRunner``). Add :meth:`middleware` to the app."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
    ):
        self.protocol_factory = protocol_factory
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.guards: dict[asyncio.BaseTransport, _Guard] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._warn = RateLimitedLog(log, interval=LOG_INTERVAL, flush=True)

    def __repr__(self) -> str:
        return f"Listener({self.host or ''}:{self.port}, open={len(self.guards)}/{self.max_connections})"

    @property
    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """Tells each connection's guard when a request has arrived (headers parsed) and when it is answered."""

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            guard = self.guards.get(request.transport) if request.transport is not None else None
            if guard is None:
                return await handler(request)
            guard.request_started()
            try:
                return await handler(request)
            finally:
                guard.request_finished()

        return track

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self.port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                if self._sockets and self.port == 0:  # one port for every address, as the first got
                    address = (address[0], self._sockets[0].getsockname()[1], *address[2:])
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"error while attempting to bind on address {address!r}: {exc.strerror}"
                    ) from None
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise
        self.port = self._sockets[0].getsockname()[1]
        for sock in self._sockets:
            self._spawn(self._accept(sock))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pause = 0.05
        while True:
            if self._slots.locked():
                self._warn.log("http_connection_limit_reached", max_connections=self.max_connections)
            await self._slots.acquire()
            slot = _Slot(self._slots)
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                slot.release()
                # EMFILE, ENFILE, ENOBUFS ...: wait for resources to free up, as Go's http.Server does.
                self._warn.log("http_accept_failed", error=exc.strerror or str(exc), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except BaseException:
                slot.release()
                raise
            pause = 0.05
            self._spawn(self._serve(conn, slot))

    async def _serve(self, conn: socket.socket, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Guard(self, self.protocol_factory(), slot),
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.header_timeout if self.ssl_context is not None else None,
            )
        except (TimeoutError, OSError, ValueError) as exc:  # a failed TLS handshake, a reset
            log.debug("http_connection_failed", error=f"{type(exc).__name__}: {exc}")
            conn.close()
            slot.release()
        except BaseException:
            conn.close()
            slot.release()
            raise

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def stop(self) -> None:
        """Stop accepting. Open connections are left to the runner's cleanup, which closes them."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_sockets()
        self._warn.stop()
