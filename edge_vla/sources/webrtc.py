"""WebRTC tracks as sources: each received video track drained into its stream's slot.

aiortc buffers decoded frames in an unbounded queue per track; a track nobody
reads grows memory forever and a slow reader grows latency. So every track is
drained by its own task as fast as frames arrive, and only the newest frame is
kept. Arrival is stamped with ``time.monotonic()`` (RTP timestamps are not
capture times); a publisher that draws a timecode (``edge_vla.timecode``) lets
the capture time be recovered too.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .. import timecode
from ..frames import FrameSlot, make_frame

log = structlog.get_logger(__name__)


class TrackSource:
    kind = "webrtc"

    def __init__(self, track: MediaStreamTrack, stream: str, read_timecode: bool = False):
        self.track = track
        self.stream = stream
        self.read_timecode = read_timecode
        self.decode_errors = 0
        self.frames_read = 0
        self.last_arrival: float | None = None
        self.max_gap_s = 0.0  # longest pause between two frames: jitter and loss show here

    async def run(self, slot: FrameSlot) -> None:
        bound = log.bind(stream=self.stream)
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                bound.info("source.ended", reason="track ended")
                return
            arrival = time.monotonic()
            if self.last_arrival is not None:
                self.max_gap_s = max(self.max_gap_s, arrival - self.last_arrival)
            self.last_arrival = arrival
            try:
                image = frame.to_ndarray(format="rgb24")
            except Exception as exc:  # a frame PyAV cannot convert: skip it, keep the peer
                self.decode_errors += 1
                bound.warning("source.decode_error", error=str(exc))
                continue
            t_capture = arrival
            if self.read_timecode:
                wall = timecode.read(image)
                if wall is not None:
                    t_capture = arrival - max(0.0, time.time() - wall)
            out = make_frame(image, self.stream, self.frames_read, source="webrtc", t_capture=t_capture)
            slot.put(out.stamp("arrival", arrival))
            self.frames_read += 1


async def drain(track: MediaStreamTrack) -> None:
    """Read and discard a track we do not use (audio), so aiortc's queue stays empty."""
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        return


def use_host_addresses(addresses: list[str] | None) -> None:
    """Offer ICE host candidates on exactly ``addresses`` (None: aioice's own choice).

    aioice has no option for this and skips 127.0.0.1, which a loopback-only
    device or test needs; it is process-wide because aioice looks it up
    as a module function.
    """
    import aioice.ice

    original = getattr(aioice.ice, "_edge_vla_original", None) or aioice.ice.get_host_addresses
    aioice.ice._edge_vla_original = original
    if addresses is None:
        aioice.ice.get_host_addresses = original
        return
    fixed = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def _patch_aioice_consent_leak() -> None:
    """Work around an aioice race that leaks one task per early-closed peer.

    When a connection is closed while ICE is still connecting (a WHIP DELETE
    right after POST, a peer that vanishes), ``connect()`` can still read the
    completed check list afterwards and start the consent-freshness task; that
    task loops over the now empty nominated pairs forever. Starting it on a
    connection that is already closing is pointless, so it returns at once.
    """
    from aioice.ice import Connection

    if getattr(Connection, "_edge_vla_patched", False):
        return
    original = Connection.query_consent

    async def query_consent(self) -> None:
        # aioice >= 0.11 marks a closing connection with _closing, 0.10 (Python 3.10) with _closed
        if getattr(self, "_closing", False) or getattr(self, "_closed", False):
            return
        await original(self)

    Connection.query_consent = query_consent
    Connection._edge_vla_patched = True


_patch_aioice_consent_leak()
