"""aiohttp application: ``/healthz``, ``/metrics``, WHIP ingest, the live view (``/``) and the ``/publish`` page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .. import metrics
from ..sources.webrtc import use_host_addresses
from . import view
from .whip import WhipService

if TYPE_CHECKING:
    from ..daemon import Daemon

STATIC = Path(__file__).parent / "static"


def cors_middleware(origins: list[str]):
    """Let a page on another origin publish by WHIP: answer preflights, expose Location."""

    @web.middleware
    async def cors(request: web.Request, handler):
        origin = request.headers.get("Origin")
        allowed = origin is not None and ("*" in origins or origin in origins)
        if request.method == "OPTIONS" and request.path.startswith("/whip/"):
            response = web.Response(status=204)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = web.Response(status=exc.status, text=(exc.text or exc.reason) + "\n",
                                        headers={k: v for k, v in exc.headers.items() if k != "Content-Type"})
        if allowed and request.path.startswith("/whip/"):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, PATCH, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Expose-Headers"] = "Location"
            response.headers["Vary"] = "Origin"
        return response

    return cors


def make_app(daemon: "Daemon") -> web.Application:
    cfg = daemon.settings.http
    app = web.Application(client_max_size=cfg.max_body, middlewares=[cors_middleware(cfg.cors_origins)])

    async def healthz(_request: web.Request) -> web.Response:
        ok, reason = daemon.health()
        return web.json_response({"healthy": ok, "reason": reason, "streams": daemon.stream_health()},
                                 status=200 if ok else 503)

    async def prometheus(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(daemon), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def publish_page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "publish.html")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/publish", publish_page)
    daemon.whip = WhipService(daemon)
    daemon.whip.add_routes(app)
    # the view gets narrow ports, not the daemon: a stream list, the goal path, the inference-idle flag
    daemon.view = view.ViewHub(streams=daemon.stream_rows, set_goal=daemon.set_goal,
                               idle=getattr(daemon.executor, "idle", None))
    memory = None
    if daemon.settings.memory.enabled:
        from .view_memory import MemoryBrowser

        memory = daemon.view_memory = MemoryBrowser(daemon.settings.memory.path, latest_image=daemon.latest_image,
                                                    idle=getattr(daemon.executor, "idle", None))
    view.add_routes(app, daemon.view, cfg, memory)
    return app


async def start_http(daemon: "Daemon") -> web.AppRunner:
    cfg = daemon.settings.http
    use_host_addresses(daemon.settings.webrtc.host_addresses)
    runner = web.AppRunner(make_app(daemon), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    daemon.whip.start()
    daemon.view.start()
    if daemon.link is not None:
        daemon.link.event_listeners.append(daemon.view.event)
    for pipeline in daemon.pipelines.values():  # streams started before the server (none today)
        daemon.view.attach(pipeline)
    return runner
