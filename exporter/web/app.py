"""The HTTP side: /metrics, /healthz, /readyz, the flows pages and a landing page. It never calls the API."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .. import __version__
from ..metrics.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition
from ..polling.snapshot import FlowState, Snapshot
from . import pages

# Pages of more flows than this are built in a worker thread, not on the event loop.
OFFLOAD_FLOWS = 500
# A flow page of more nodes than this too (100,000 nodes, an 8 MiB answer, take ~170 ms).
OFFLOAD_NODES = 2000


@dataclass(frozen=True)
class Health:
    """How the app learns whether the poll loop is alive and whether data are there yet."""

    alive: Callable[[], bool]
    ready: Callable[[], bool]


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header asks for OpenMetrics (as Prometheus does when it prefers it)."""
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        params = [p.strip().lower() for p in part.split(";")[1:]]
        if media == "application/openmetrics-text" and "q=0" not in params:
            return True
    return False


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        fields = [p.strip().lower() for p in part.split(";")]
        if fields[0] in ("gzip", "*") and not any(p in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in fields[1:]):
            return True
    return False


# Asks for a reload: a future for its problems (empty: it succeeded). Cancelling it withdraws the request.
Reloader = Callable[[], asyncio.Future[list[str]]]

LIFECYCLE_DISABLED = (
    "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle to reload "
    "with POST /-/reload (SIGHUP always reloads)\n"
)
# How often a POST /-/reload waiting for its reload checks that its client is still there.
CLIENT_CHECK_SECONDS = 0.5


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def html_response(text: str, status: int = 200) -> web.Response:
    # "replace": a lone surrogate (JSON can carry one) must not turn a page into a 500.
    response = web.Response(body=text.encode("utf-8", "replace"), status=status, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = pages.CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def wants_json(request: web.Request) -> bool:
    """``?format=json``, or an Accept header that prefers JSON to HTML."""
    if request.query.get("format") == "json":
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def make_app(
    exposition: Exposition,
    health: Health,
    telemetry_path: str = "/metrics",
    middlewares: Iterable[Callable] = (),
    *,
    reload: Reloader | None = None,
    lifecycle: bool = False,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        body = exposition.body(openmetrics=openmetrics, gzip=gzip)
        response = web.Response(body=body)
        response.headers["Content-Type"] = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        response.headers["Vary"] = "Accept, Accept-Encoding"
        if gzip:
            response.headers["Content-Encoding"] = "gzip"
        return response

    async def healthz(request: web.Request) -> web.Response:
        if health.alive():
            return web.Response(text="OK\n")
        return web.Response(status=503, text="poll loop is not running\n")

    async def readyz(request: web.Request) -> web.Response:
        if health.ready():
            return web.Response(text="OK\n")
        return web.Response(status=503, text="waiting for the first poll cycle\n")

    async def landing(request: web.Request) -> web.Response:
        path = html.escape(telemetry_path, quote=True)
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>itnio-exporter</title></head>
<body>
<h1>itnio-exporter</h1>
<p>Prometheus exporter for ITNIO TECH automatic-redial (recall) flows. Version {html.escape(__version__)}.</p>
<ul>
<li><a href="{path}">Metrics</a></li>
<li><a href="/flows">Flows</a> (state, errors and last API answer of every watched flow)</li>
<li><a href="/healthz">Health</a> (poll loop alive)</li>
<li><a href="/readyz">Readiness</a> (first poll cycle done)</li>
</ul>
</body></html>
"""
        return web.Response(text=page, content_type="text/html")

    async def build(render: Callable[[], str], large: bool) -> str:
        return await asyncio.to_thread(render) if large else render()

    async def flows(request: web.Request) -> web.Response:
        snapshots, balances, now = exposition.snapshots, exposition.balances, clock()
        filters = pages.Filters.parse(request.query, [snapshot.account for snapshot in snapshots])
        large = sum(len(snapshot.flows) for snapshot in snapshots) > OFFLOAD_FLOWS
        if wants_json(request):
            return web.json_response(
                text=await build(lambda: pages.json_text(pages.flows_json(snapshots, now, filters, balances)), large)
            )
        links = [("/", "Home"), (telemetry_path, "Metrics")]
        text = await build(lambda: pages.flows_html(snapshots, now, links, filters, balances), large)
        return html_response(text)

    def find(account: str | None, key: str) -> list[tuple[Snapshot, FlowState]]:
        """The flows ``key`` of ``account`` (None: of every account that has one)."""
        if not (key.isascii() and key.isdigit() and len(key) < 20):
            return []
        return [
            (snapshot, state) for snapshot in exposition.snapshots
            if account is None or snapshot.account == account
            for state in (snapshot.flow(int(key)),) if state is not None
        ]

    async def flow(request: web.Request) -> web.Response:
        key, account = request.match_info["key_id"], request.match_info.get("account")
        found = find(account, key)
        if not found:
            return html_response(pages.not_found(key, account), status=404)
        if len(found) > 1:  # /flows/{key_id} of a keyId several accounts watch: which one?
            names = [snapshot.account for snapshot, _ in found]
            if wants_json(request):
                links = [f"/flows/{name}/{int(key)}" for name in names]
                return web.json_response(text=pages.json_text({"key_id": int(key), "accounts": names, "links": links}),
                                         status=300)
            return html_response(pages.ambiguous(int(key), names), status=300)
        snapshot, state = found[0]
        if wants_json(request):
            return web.json_response(text=pages.json_text(pages.flow_row(state, clock(), snapshot.account)))
        large = state.detail is not None and len(state.detail.nodes) > OFFLOAD_NODES
        return html_response(await build(lambda: pages.flow_html(state, clock(), snapshot.account, snapshot.host), large))

    async def do_reload(request: web.Request) -> web.Response:
        assert reload is not None
        if not lifecycle:
            return web.Response(status=403, text=LIFECYCLE_DISABLED)
        future = reload()
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=CLIENT_CHECK_SECONDS)
                if not future.done() and client_gone(request):
                    return web.Response(status=499, text="client closed the request\n")  # read by no one
            problems = future.result()
        finally:
            future.cancel()  # no-op once answered; else withdraws the request (no reload for nobody)
        if problems:
            return web.Response(status=500, text="failed to reload config:\n" + "\n".join(problems) + "\n")
        return web.Response(text="OK\n")

    app = web.Application(middlewares=list(middlewares))
    if reload is not None:
        app.router.add_post("/-/reload", do_reload)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/flows", flows)
    app.router.add_get("/flows/{key_id}", flow)
    app.router.add_get("/flows/{account}/{key_id}", flow)
    if telemetry_path != "/":
        app.router.add_get("/", landing)
    return app
