"""WHIP ingest (RFC 9725): WebRTC publishers become streams of the daemon.

``POST /whip/{stream}`` with an SDP offer creates a session: its video track
feeds a new pipeline named ``{stream}``, audio is drained and dropped, and a
data channel labelled ``actions`` (when offered) carries the stream's actions
out and executor feedback in. ``DELETE`` on the session URL ends it; so does a
peer that stops sending for ``webrtc.peer_timeout_s``. aiortc answers with all
its candidates (no trickle), so ``PATCH`` is 405.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from ..actions import ActionMessage, BadPayload, parse_feedback
from ..sources.webrtc import TrackSource, drain
from .auth import authorized

if TYPE_CHECKING:
    from ..daemon import Daemon

log = structlog.get_logger(__name__)

STREAM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_BUFFERED = 256 * 1024  # bytes queued on a data channel before actions are dropped


class SdpError(ValueError):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def check_offer(text: str) -> None:
    """Reject what aiortc cannot answer before it gets the chance to fail."""
    if not text.lstrip().startswith("v=0"):
        raise SdpError(400, "body is not an SDP offer (no v=0 line)")
    try:
        desc = SessionDescription.parse(text)
    except Exception as exc:
        raise SdpError(400, f"malformed SDP: {exc}") from None
    video = [m for m in desc.media if m.kind == "video"]
    if not video:
        raise SdpError(422, "the offer has no video m-line")
    for m in video:
        for codec in m.rtp.codecs:
            mime = codec.mimeType.lower()
            if mime == "video/vp8":
                return
            if mime == "video/h264" and str(codec.parameters.get("packetization-mode")) == "1":
                return
    raise SdpError(422, "no supported video codec in the offer: need VP8 or H.264 with packetization-mode=1")


class DataChannelSink:
    """Actions out over the peer's ``actions`` data channel; drops when the peer reads too slowly."""

    def __init__(self) -> None:
        self.channel = None
        self.sent = 0
        self.dropped_slow = 0

    def send(self, msg: ActionMessage, deadline_mono: float) -> bool:
        ch = self.channel
        if ch is None or ch.readyState != "open" or time.monotonic() >= deadline_mono:
            return False
        if ch.bufferedAmount > MAX_BUFFERED:
            self.dropped_slow += 1
            return False
        ch.send(msg.to_json())
        self.sent += 1
        return True


@dataclass
class WhipSession:
    id: str
    stream: str
    pc: RTCPeerConnection
    sink: DataChannelSink = field(default_factory=DataChannelSink)
    source: TrackSource | None = None
    tasks: set = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    bad_feedback: int = 0
    closed: bool = False

    def last_activity(self) -> float:
        return self.source.last_arrival if self.source and self.source.last_arrival else self.created


class WhipService:
    def __init__(self, daemon: "Daemon"):
        self.daemon = daemon
        self.cfg = daemon.settings.webrtc
        self.http = daemon.settings.http
        self.sessions: dict[str, WhipSession] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._reaper: asyncio.Task | None = None
        self.counts = {"created": 0, "closed": 0, "timeouts": 0, "rejected": 0}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/whip/{stream}", self.post)
        app.router.add_delete("/whip/{stream}/{session}", self.delete)
        app.router.add_patch("/whip/{stream}/{session}", self.patch)

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="whip-reaper")

    # -- HTTP ---------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return authorized(request, self.http)

    def _rate_ok(self, request: web.Request) -> bool:
        peer = request.remote or "?"
        now = time.monotonic()
        tokens, last = self._buckets.get(peer, (self.http.rate_per_s, now))
        tokens = min(self.http.rate_per_s, tokens + (now - last) * self.http.rate_per_s)
        ok = tokens >= 1
        self._buckets[peer] = (tokens - 1 if ok else tokens, now)
        return ok

    def _reject(self, status: int, reason: str, **headers: str) -> web.Response:
        self.counts["rejected"] += 1
        log.warning("whip.rejected", status=status, reason=reason)
        return web.Response(status=status, text=reason + "\n", headers=headers)

    async def post(self, request: web.Request) -> web.Response:
        stream = request.match_info["stream"]
        if not self._rate_ok(request):
            return self._reject(429, "too many requests", **{"Retry-After": "1"})
        if not self._authorized(request):
            return self._reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/sdp":
            return self._reject(415, "Content-Type must be application/sdp")
        if not STREAM_RE.match(stream):
            return self._reject(400, "stream names are 1-64 of A-Z a-z 0-9 _ . -")
        if len(self.sessions) >= self.cfg.max_peers:
            return self._reject(503, f"at most {self.cfg.max_peers} publishers", **{"Retry-After": "5"})
        if stream in self.daemon.pipelines or any(s.stream == stream for s in self.sessions.values()):
            return self._reject(409, f"stream {stream!r} is already being published")
        try:
            body = await request.read()
            offer = body.decode("utf-8")
            check_offer(offer)
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, f"offer larger than {self.http.max_body} bytes")
        except UnicodeDecodeError:
            return self._reject(400, "offer is not UTF-8 text")
        except SdpError as exc:
            return self._reject(exc.status, str(exc))
        session = self._new_session(stream)
        try:
            await session.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await session.pc.setLocalDescription(await session.pc.createAnswer())
        except Exception as exc:
            await self.close(session, "bad offer")
            return self._reject(422 if "codec" in str(exc).lower() else 400, f"cannot answer this offer: {exc}")
        self.counts["created"] += 1
        location = f"/whip/{stream}/{session.id}"
        log.info("whip.session_created", stream=stream, session=session.id, peer=request.remote)
        return web.Response(status=201, text=session.pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": location})

    async def delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._reject(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        session = self.sessions.get(request.match_info["session"])
        if session is None or session.stream != request.match_info["stream"]:
            return self._reject(404, "no such session")
        await self.close(session, "deleted by peer")
        return web.Response(status=200, text="session closed\n")

    async def patch(self, request: web.Request) -> web.Response:
        return web.Response(status=405, text="trickle ICE is not supported: the answer holds all candidates\n",
                            headers={"Allow": "DELETE"})

    # -- sessions -------------------------------------------------------------------
    def _new_session(self, stream: str) -> WhipSession:
        servers = [RTCIceServer(urls=u) for u in self.cfg.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))  # [] : never a public STUN by default
        session = WhipSession(id=uuid.uuid4().hex, stream=stream, pc=pc)
        self.sessions[session.id] = session
        bound = log.bind(stream=stream, session=session.id)

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video" and session.source is None:
                session.source = TrackSource(track, stream, read_timecode=self.cfg.read_timecode)
                try:
                    self.daemon.add_stream(stream, session.source, sinks=[session.sink])
                except Exception as exc:
                    bound.error("whip.stream_failed", error=str(exc))
                    self._spawn(session, self.close(session, "stream could not start"))
            else:  # audio, or a second video track: read and drop so nothing queues up
                self._spawn(session, drain(track))

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label != "actions":
                return
            session.sink.channel = channel

            @channel.on("message")
            def on_message(message) -> None:
                try:
                    fb = parse_feedback(message)
                except BadPayload as exc:
                    session.bad_feedback += 1
                    bound.warning("whip.bad_feedback", error=str(exc))
                    return
                pipeline = self.daemon.pipelines.get(stream)
                if pipeline is not None:
                    pipeline.on_feedback(fb)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            bound.info("whip.connection_state", state=pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self._spawn(session, self.close(session, f"connection {pc.connectionState}"))

        return session

    def _spawn(self, session: WhipSession, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def close(self, session: WhipSession, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        if self.daemon.pipelines.get(session.stream) is not None and session.source is not None:
            await self.daemon.remove_stream(session.stream)
        current = asyncio.current_task()
        for task in list(session.tasks):
            if task is not current:
                task.cancel()
        await session.pc.close()
        self.counts["closed"] += 1
        log.info("whip.session_closed", stream=session.stream, session=session.id, reason=reason)

    async def close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            await self.close(session, "daemon stopping")

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.peer_timeout_s / 2))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if now - session.last_activity() > self.cfg.peer_timeout_s:
                    self.counts["timeouts"] += 1
                    await self.close(session, f"no frame for {self.cfg.peer_timeout_s:g}s")
