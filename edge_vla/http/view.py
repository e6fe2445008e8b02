"""The live view (``GET /``): what each stream sees and does, pushed to the people watching.

Pipelines report to a ``ViewHub`` (frame sampled, decision, verdict, event); for a stream nobody
watches each report costs one dict lookup. Frames are JPEG-encoded off the event loop in one
worker thread, and every viewer holds only the newest picture (a slot, never a queue).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import json
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import structlog
from aiohttp import WSMsgType, web

from ..actions import BadPayload, box_to_normalized
from ..config import HttpConfig
from .auth import VIEW_COOKIE, same_origin, token_ok, view_authorized, view_cookie_value

if TYPE_CHECKING:
    from ..frames import Frame
    from .view_memory import MemoryBrowser
    from ..loop.verifier import Verdict
    from ..pipeline import StreamPipeline
    from ..policy import Decision

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
VIEW_WIDTH = 640  # pictures for people are downscaled to at most this wide
JPEG_QUALITY = 70
IDLE_WAIT_S = 0.5  # the encoder lets a running inference finish first, but not for longer than this
MAX_MESSAGES = 200  # JSON messages waiting for one slow viewer; beyond, the oldest are dropped
MAX_ELEMENTS = 64  # candidates drawn per decision
EVENTS_KEPT = 50  # recent P/events a viewer gets on connecting
TICK_S = 1.0  # how often the stream list (rates, health) is pushed
RATE_WINDOW_S = 5.0  # frame rates are averaged over about this long
HEARTBEAT_S = 10.0  # a viewer that stops answering pings is closed
MAX_COMMAND = 4096  # bytes in one message from a viewer
SEND_BUFFER = 128 * 1024  # kernel send buffer per viewer socket (a few pictures)
CLOSE_WAIT_S = 1.0  # at shutdown, how long viewers get to take the close frame


@dataclass(eq=False)
class Viewer:
    """One open page: the stream it watches, its newest picture, and the messages not yet sent."""

    ws: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None  # to cut a viewer that cannot even take a close frame
    stream: str | None = None
    frame: bytes | None = None  # the slot: a newer picture replaces an unsent one
    messages: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MAX_MESSAGES))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0
    frames_replaced: int = 0

    def push(self, text: str) -> None:
        self.messages.append(text)
        self.wake.set()

    def offer_frame(self, packet: bytes) -> None:
        if self.frame is not None:
            self.frames_replaced += 1
        self.frame = packet
        self.wake.set()


def frame_packet(header: dict, jpeg: bytes) -> bytes:
    """A binary WebSocket message: 4-byte big-endian header length, JSON header, JPEG."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + jpeg


def encode_jpeg(image, width: int = VIEW_WIDTH, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    img = Image.fromarray(image)
    if img.width > width:
        img = img.reduce(math.ceil(img.width / width))  # box filter by an integer factor: cheap
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class ViewHub:
    """Fan-out from the pipelines to the viewers.

    ``streams`` returns one summary dict per stream (counters, health, goal); ``set_goal`` hands an
    instruction to a stream the way ``P/S/goal`` does; ``idle`` is set while no inference runs.
    """

    def __init__(self, streams: Callable[[], list[dict]], set_goal: Callable[[str, str], str | None],
                 idle: threading.Event | None = None):
        self._streams = streams
        self._set_goal = set_goal
        self._idle = idle
        self.viewers: set[Viewer] = set()
        self._watching: dict[str, int] = {}  # stream -> viewers watching it
        self._pending: dict[str, Frame] = {}  # newest sampled frame per watched stream, not yet encoded
        self.events: collections.deque[dict] = collections.deque(maxlen=EVENTS_KEPT)
        self.frames_encoded = 0
        self.heartbeat_s = HEARTBEAT_S
        self.memory = False  # whether the page offers the visual memory panel (memory.enabled)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._encode_wake: asyncio.Event | None = None
        self._encoder: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task] = []
        self._marks: dict[str, collections.deque] = {}  # stream -> recent (time, frames, sampled) counters

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._encode_wake = asyncio.Event()
        self._encoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="view-encode")
        self._tasks = [self._loop.create_task(self._encode_loop(), name="view-encoder"),
                       self._loop.create_task(self._tick_loop(), name="view-ticker")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        closes = [asyncio.ensure_future(v.ws.close(code=1001, message=b"daemon stopping"))
                  for v in self.viewers if v.ws is not None]
        if closes:
            # a viewer that stopped reading cannot take the close frame either: cut it after a second
            _, pending = await asyncio.wait(closes, timeout=CLOSE_WAIT_S)
            for fut in pending:
                fut.cancel()
            for v in list(self.viewers):
                if v.transport is not None and not v.transport.is_closing():
                    v.transport.abort()
            await asyncio.gather(*closes, return_exceptions=True)
        if self._encoder is not None:
            self._encoder.shutdown(wait=False, cancel_futures=True)

    def attach(self, pipeline: "StreamPipeline") -> None:
        pipeline.on_sampled.append(self.sampled)
        pipeline.on_decided.append(self.decided)
        pipeline.on_verdict.append(self.verdict)

    # -- reports from the pipelines (event loop; must be cheap) -------------------------------
    def sampled(self, frame: "Frame") -> None:
        if not self._watching.get(frame.stream):
            return
        self._pending[frame.stream] = frame  # newest wins: an unencoded older frame is dropped
        assert self._encode_wake is not None
        self._encode_wake.set()

    def decided(self, frame: "Frame", instruction: str, decision: "Decision", msg) -> None:
        if not self._watching.get(frame.stream):
            return
        action = msg.model_dump(mode="json", exclude_none=True) if msg is not None else \
            decision.action.model_dump(mode="json", exclude_none=True)
        self._send(frame.stream, {
            "type": "decision", "stream": frame.stream, "seq": frame.seq, "frame_ts": frame.wall_ts,
            "instruction": instruction, "model": decision.model, "sent": msg is not None,
            "elements": self._elements(decision.layer), "focus": decision.focus, "action": action,
        })

    def verdict(self, stream: str, v: "Verdict") -> None:
        if not self._watching.get(stream):
            return
        self._send(stream, {"type": "verdict", "stream": stream, **v.payload(), "status": v.status})

    def event(self, data: dict) -> None:
        """A ``P/events`` message; may come from any thread (memory publishes from its own)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._record_event(data)
            return
        try:
            loop.call_soon_threadsafe(self._record_event, data)
        except RuntimeError:  # the loop closed meanwhile: the daemon is gone, and so are the viewers
            pass

    def _record_event(self, data: dict) -> None:
        self.events.append(data)  # rare, so kept even unwatched: a page opened later shows the recent ones
        if self.viewers:
            self._broadcast(json.dumps({"type": "event", **data}, default=str))

    # -- viewers --------------------------------------------------------------------------------
    def join(self, ws: web.WebSocketResponse | None = None,
             transport: asyncio.BaseTransport | None = None) -> Viewer:
        viewer = Viewer(ws=ws, transport=transport)
        self.viewers.add(viewer)
        viewer.push(json.dumps({"type": "hello", "streams": self.rows(), "events": list(self.events),
                                "memory": self.memory}, default=str))
        log.info("view.joined", viewers=len(self.viewers))
        return viewer

    def leave(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.discard(viewer)
            self.watch(viewer, None)
            viewer.frame = None
            viewer.messages.clear()
            log.info("view.left", viewers=len(self.viewers), frames_sent=viewer.frames_sent,
                     frames_replaced=viewer.frames_replaced)

    def watch(self, viewer: Viewer, stream: str | None) -> None:
        if viewer.stream is not None:
            n = self._watching.get(viewer.stream, 0) - 1
            if n > 0:
                self._watching[viewer.stream] = n
            else:
                self._watching.pop(viewer.stream, None)
                self._pending.pop(viewer.stream, None)
        viewer.stream = stream
        viewer.frame = None
        if stream is not None:
            self._watching[stream] = self._watching.get(stream, 0) + 1

    def command(self, viewer: Viewer, text: str) -> None:
        """``{"op": "watch", "stream": S}`` or ``{"op": "goal", "stream": S, "instruction": T}``."""
        try:
            data = json.loads(text)
            op = data["op"]
        except (ValueError, KeyError, TypeError):
            viewer.push(json.dumps({"type": "error", "error": "expected a JSON object with 'op'"}))
            return
        stream = data.get("stream")
        if op == "watch":
            self.watch(viewer, stream if isinstance(stream, str) else None)
            viewer.push(json.dumps({"type": "watching", "stream": viewer.stream}))
        elif op == "goal":
            reply: dict[str, Any] = {"type": "goal", "stream": stream}
            try:
                if not isinstance(stream, str) or not isinstance(data.get("instruction"), str):
                    raise BadPayload("goal needs a 'stream' and an 'instruction' string")
                reply["instruction"] = self._set_goal(stream, data["instruction"])
                reply["ok"] = True
            except (BadPayload, KeyError) as exc:
                reply.update(ok=False, error=str(exc.args[0]) if exc.args else type(exc).__name__)
            log.info("view.goal", stream=stream, ok=reply["ok"])
            viewer.push(json.dumps(reply))
        else:
            viewer.push(json.dumps({"type": "error", "error": f"unknown op {op!r}"}))

    async def send_loop(self, ws: web.WebSocketResponse, viewer: Viewer) -> None:
        """Messages first (small, ordered), then the newest picture; a slow socket blocks here (in
        aiohttp's drain) while the slot keeps only the newest picture."""
        while not ws.closed:
            await viewer.wake.wait()
            viewer.wake.clear()
            while viewer.messages:
                await ws.send_str(viewer.messages.popleft())
            packet, viewer.frame = viewer.frame, None
            if packet is not None:
                await ws.send_bytes(packet)
                viewer.frames_sent += 1

    def rows(self) -> list[dict]:
        """The stream list, with frame rates over the last few seconds (sampling comes in bursts:
        with ``loop.await_verdict`` a stream samples nothing while it waits for its last action)."""
        now = time.monotonic()
        rows = self._streams()
        for row in rows:
            marks = self._marks.setdefault(row["stream"], collections.deque(maxlen=16))
            if not marks or now - marks[-1][0] >= 0.5:
                marks.append((now, row["frames"], row["sampled"]))
            while len(marks) > 2 and now - marks[1][0] >= RATE_WINDOW_S:
                marks.popleft()
            t0, frames0, sampled0 = marks[0]
            dt = now - t0
            ok = dt >= 0.5
            row["fps_in"] = round((row["frames"] - frames0) / dt, 1) if ok else None
            row["fps_sampled"] = round((row["sampled"] - sampled0) / dt, 1) if ok else None
        names = {row["stream"] for row in rows}
        for name in [n for n in self._marks if n not in names]:  # streams that ended
            del self._marks[name]
        return rows

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _elements(layer) -> list[dict]:
        if layer is None:
            return []
        out = []
        for e in layer.elements[:MAX_ELEMENTS]:
            box = box_to_normalized(tuple(int(v) for v in e.box), layer.width, layer.height)
            out.append({"kind": e.kind, "text": e.text or None, "box": list(box)})
        return out

    def _send(self, stream: str, data: dict) -> None:
        text = json.dumps(data, default=str)
        for v in self.viewers:
            if v.stream == stream:
                v.push(text)

    def _broadcast(self, text: str) -> None:
        for v in self.viewers:
            v.push(text)

    def _encode(self, frame: "Frame") -> bytes:
        if self._idle is not None:
            # two cores: encoding while the model runs would add to that action's latency
            self._idle.wait(IDLE_WAIT_S)
        jpeg = encode_jpeg(frame.image)
        return frame_packet({"stream": frame.stream, "seq": frame.seq, "ts": frame.wall_ts,
                             "w": frame.width, "h": frame.height}, jpeg)

    async def _encode_loop(self) -> None:
        assert self._loop is not None and self._encode_wake is not None
        while True:
            await self._encode_wake.wait()
            self._encode_wake.clear()
            while self._pending:
                stream = next(iter(self._pending))
                frame = self._pending.pop(stream)
                try:
                    packet = await self._loop.run_in_executor(self._encoder, self._encode, frame)
                except Exception:
                    log.exception("view.encode_failed", stream=stream)
                    continue
                self.frames_encoded += 1
                for v in self.viewers:
                    if v.stream == stream:
                        v.offer_frame(packet)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if not self.viewers:
                self._marks.clear()
                continue
            try:
                self._broadcast(json.dumps({"type": "streams", "streams": self.rows()}, default=str))
            except Exception:
                log.exception("view.tick_failed")


# -- HTTP -----------------------------------------------------------------------------------------

def _unauthorized() -> web.Response:
    return web.Response(status=401, text="missing or wrong bearer token: send 'Authorization: Bearer TOKEN', "
                                         "or open /?token=TOKEN once in a browser\n",
                        headers={"WWW-Authenticate": "Bearer"})


def limit_send_buffer(request: web.Request) -> None:
    """Cap the kernel's send buffer for a viewer's socket: Linux lets one grow to megabytes for a
    client that stops reading, per viewer; with a small one the sender soon waits on the socket and
    the viewer's slot keeps only the newest picture, as it should."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:  # not a TCP socket (a test transport): nothing to cap
            pass


def add_routes(app: web.Application, hub: ViewHub, cfg: HttpConfig, memory: "MemoryBrowser | None" = None) -> None:
    """``GET /`` (the page), ``GET /view/app.js``, ``GET /view/ws`` (the live socket); with ``memory``,
    ``GET /view/memory/recent``, ``/view/memory/similar`` and ``/view/memory/thumb/{id}``."""

    async def page(request: web.Request) -> web.StreamResponse:
        given = request.query.get("token")
        if given is not None:  # a browser logging in: trade the token for a cookie, then drop it from the URL
            token = cfg.bearer_token()
            if token is None:
                return web.Response(status=303, headers={"Location": "/"})
            if not token_ok(given, token):
                log.warning("view.rejected", reason="wrong token in URL", peer=request.remote)
                return _unauthorized()
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(VIEW_COOKIE, view_cookie_value(token), httponly=True, samesite="Strict",
                                path="/")
            return response
        if not view_authorized(request, cfg):
            log.warning("view.rejected", reason="no or wrong token", peer=request.remote, path=request.path)
            return _unauthorized()
        return web.FileResponse(STATIC / "view.html", headers={"Cache-Control": "no-store"})

    async def script(request: web.Request) -> web.StreamResponse:
        if not view_authorized(request, cfg):
            return _unauthorized()
        return web.FileResponse(STATIC / "view.js", headers={"Cache-Control": "no-store"})

    async def socket(request: web.Request) -> web.StreamResponse:
        if not view_authorized(request, cfg):
            log.warning("view.rejected", reason="no or wrong token", peer=request.remote, path=request.path)
            return _unauthorized()
        if not same_origin(request):
            log.warning("view.rejected", reason="cross-origin socket", origin=request.headers.get("Origin"))
            return web.Response(status=403, text="the live view socket only serves pages of this server\n")
        ws = web.WebSocketResponse(heartbeat=hub.heartbeat_s, max_msg_size=MAX_COMMAND)
        await ws.prepare(request)
        limit_send_buffer(request)
        viewer = hub.join(ws, request.transport)
        sender = asyncio.get_running_loop().create_task(hub.send_loop(ws, viewer), name="view-sender")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    hub.command(viewer, msg.data)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            hub.leave(viewer)
            if not ws.closed:
                await ws.close()
        return ws

    app.router.add_get("/", page)
    app.router.add_get("/view/app.js", script)
    app.router.add_get("/view/ws", socket)
    if memory is not None:
        hub.memory = True
        _add_memory_routes(app, memory, cfg)


def _add_memory_routes(app: web.Application, memory: "MemoryBrowser", cfg: HttpConfig) -> None:
    def number(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
        try:
            value = float(request.query.get(name, default))
        except ValueError:
            raise web.HTTPBadRequest(text=f"{name} must be a number\n") from None
        return min(hi, max(lo, value))

    async def answer(work) -> web.Response:
        try:
            hits = await work()
        except (KeyError, FileNotFoundError) as exc:
            return web.Response(status=404, text=f"{exc.args[0] if exc.args else exc}\n")
        except Exception as exc:  # a broken or busy database must not break the page
            log.warning("view.memory_failed", error=str(exc), error_type=type(exc).__name__)
            return web.Response(status=503, text=f"memory unavailable: {exc}\n")
        return web.json_response({"hits": hits}, headers={"Cache-Control": "no-store"})

    async def recent(request: web.Request) -> web.Response:
        if not view_authorized(request, cfg):
            return _unauthorized()
        seconds = number(request, "seconds", 600, 1, 30 * 86400)
        limit = int(number(request, "limit", 24, 1, 48))
        return await answer(lambda: memory.recent(request.query.get("stream"), seconds, limit))

    async def similar(request: web.Request) -> web.Response:
        if not view_authorized(request, cfg):
            return _unauthorized()
        k = int(number(request, "k", 12, 1, 48))
        return await answer(lambda: memory.similar(request.query.get("stream", "default"), k))

    async def thumb(request: web.Request) -> web.Response:
        if not view_authorized(request, cfg):
            return _unauthorized()
        try:
            fmt, data = await memory.thumb(int(request.match_info["id"]))
        except (KeyError, ValueError, FileNotFoundError):
            return web.Response(status=404, text="no such thumbnail\n")
        return web.Response(body=data, content_type="image/png" if fmt == "png" else "image/jpeg",
                            headers={"Cache-Control": "private, max-age=3600"})

    app.router.add_get("/view/memory/recent", recent)
    app.router.add_get("/view/memory/similar", similar)
    app.router.add_get(r"/view/memory/thumb/{id:\d+}", thumb)
