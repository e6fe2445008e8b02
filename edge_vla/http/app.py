"""aiohttp application: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .. import metrics

if TYPE_CHECKING:
    from ..daemon import Daemon

MAX_BODY = 256 * 1024


def make_app(daemon: "Daemon") -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(_request: web.Request) -> web.Response:
        ok, reason = daemon.health()
        return web.json_response({"healthy": ok, "reason": reason, "streams": daemon.stream_health()},
                                 status=200 if ok else 503)

    async def prometheus(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(daemon), headers={"Content-Type": metrics.CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


async def start_http(daemon: "Daemon") -> web.AppRunner:
    cfg = daemon.settings.http
    runner = web.AppRunner(make_app(daemon), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    return runner
