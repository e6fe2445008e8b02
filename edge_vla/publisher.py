"""A WHIP publisher (aiortc): stream pictures to an edge-vla daemon, get actions back.

Used by ``tools/whip_publish.py``, by ``edge-vla bench --source webrtc`` and by
the tests. The picture comes from a function (the UI simulator, a moving
pattern) and can carry the capture time as a pixel timecode; a data channel
labelled ``actions`` brings the daemon's actions back and carries feedback out.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from typing import Callable

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame
from yarl import URL

from . import timecode
from .sources import webrtc as _webrtc  # noqa: F401 - applies the aioice consent-leak fix here too


class PictureTrack(VideoStreamTrack):
    """Frames from ``make_image()`` at ``fps``, optionally stamped with their capture time."""

    def __init__(self, make_image: Callable[[], np.ndarray], fps: float = 30.0, stamp_time: bool = True):
        super().__init__()
        self.make_image = make_image
        self.fps = fps
        self.stamp_time = stamp_time
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        image = self.make_image()
        if self.stamp_time:
            image = timecode.stamp(np.array(image, copy=True))
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(self._n * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


def moving_pattern(width: int, height: int) -> Callable[[], np.ndarray]:
    """A test picture with a bar that moves, so the sampler sees motion."""
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    base[..., 2] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    state = {"i": 0}

    def make() -> np.ndarray:
        img = base.copy()
        x = (state["i"] * 8) % width
        img[:, x:x + 16] = 255
        state["i"] += 1
        return img
    return make


class WhipPublisher:
    def __init__(self, url: str, track, token: str | None = None, codec: str = "vp8",
                 on_action: Callable[[dict], None] | None = None, data_channel: bool = True):
        self.url = url
        self.track = track
        self.token = token
        self.codec = codec.lower()
        self.on_action = on_action
        self.want_channel = data_channel
        self.pc: RTCPeerConnection | None = None
        self.channel = None
        self.location: str | None = None
        self.actions: list[tuple[float, dict]] = []  # (monotonic arrival, payload)

    def _headers(self, extra: dict | None = None) -> dict:
        h = dict(extra or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def start(self, timeout: float = 15.0) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        prefs = [c for c in RTCRtpSender.getCapabilities("video").codecs
                 if c.mimeType.lower() == f"video/{self.codec}"]
        if not prefs:
            raise ValueError(f"codec {self.codec!r} is not available in aiortc")
        transceiver.setCodecPreferences(prefs)
        if self.want_channel:
            # actions carry deadlines: a late one is useless, so no retransmits or ordering
            self.channel = self.pc.createDataChannel("actions", ordered=False, maxRetransmits=0)
            self.channel.on("message", self._on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, data=self.pc.localDescription.sdp,
                                 headers=self._headers({"Content-Type": "application/sdp"}),
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                body = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"WHIP POST {self.url}: {r.status} {body.strip()}")
                self.location = str(r.url.join(URL(r.headers["Location"])))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    def _on_message(self, message) -> None:
        data = json.loads(message)
        self.actions.append((time.monotonic(), data))
        if self.on_action:
            self.on_action(data)

    def send_feedback(self, feedback: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(feedback))

    async def stop(self) -> int | None:
        """DELETE the session (returns the status) and close the peer connection."""
        status = None
        if self.location:
            async with aiohttp.ClientSession() as http:
                async with http.delete(self.location, headers=self._headers()) as r:
                    status = r.status
        if self.pc is not None:
            await self.pc.close()
        return status


def _picture_source(args):
    """``(make_image, world)``: the picture function, and the sim world when there is one."""
    if args.source == "sim":
        from .sim import SimWorld

        world = SimWorld(seed=args.seed, width=args.width, height=args.height)
        last = [time.monotonic()]

        def make() -> np.ndarray:
            now = time.monotonic()
            world.advance(now - last[0])
            last[0] = now
            return world.render()
        return make, world
    return moving_pattern(args.width, args.height), None


async def _run(args) -> int:
    from .actions import validate_action
    from .sources.webrtc import use_host_addresses

    use_host_addresses(args.host_address or None)
    make, world = _picture_source(args)
    executed = {"n": 0}
    pub: WhipPublisher

    def on_action(data: dict) -> None:
        if not args.quiet:
            print(json.dumps(data), flush=True)
        if world is not None and args.execute:
            fields = {k: data[k] for k in ("type", "x", "y", "x2", "y2", "text", "key", "dx", "dy") if k in data}
            result = world.execute(validate_action(fields))
            executed["n"] += 1
            pub.send_feedback({"v": 1, "action_id": data["id"], "status": result.status, "ts": time.time(),
                               "detail": result.detail})

    if args.source in ("file", "lavfi"):
        from aiortc.contrib.media import MediaPlayer

        player = MediaPlayer(args.uri, format="lavfi" if args.source == "lavfi" else None)
        track = player.video
    else:
        track = PictureTrack(make, fps=args.fps, stamp_time=not args.no_timecode)
    pub = WhipPublisher(args.url, track, token=args.token, codec=args.codec, on_action=on_action)
    await pub.start()
    try:
        await asyncio.sleep(args.seconds)
    finally:
        status = await pub.stop()
    summary = {"actions": len(pub.actions), "executed": executed["n"], "delete_status": status}
    if world is not None:
        summary["task_success"] = world.success
    print(json.dumps({"summary": summary}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="publish a stream to an edge-vla daemon by WHIP")
    p.add_argument("url", help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/default")
    p.add_argument("--token")
    p.add_argument("--source", choices=["sim", "pattern", "file", "lavfi"], default="sim")
    p.add_argument("--uri", help="file path or lavfi graph (file/lavfi sources)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--execute", action="store_true", help="carry out received actions on the simulator")
    p.add_argument("--no-timecode", action="store_true", help="do not draw the capture time into frames")
    p.add_argument("--host-address", action="append", help="ICE host candidate address (repeatable)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return asyncio.run(_run(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
