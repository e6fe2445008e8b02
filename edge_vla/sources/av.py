"""PyAV-backed frame sources: video files, live inputs (RTSP, V4L2 cameras) and lavfi graphs.

This module owns everything between an FFmpeg input and the FrameSlot: opening the
input with the right options, decoding in a worker thread, converting to RGB,
pacing file playback, skipping undecodable packets, and reconnecting live inputs.

Each ``run`` starts one decoder thread. PyAV releases the GIL while demuxing and
decoding, so the thread costs the event loop nothing; it hands frames over with
``FrameSlot.put_threadsafe`` and never waits for the consumer (newest frame wins).
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from typing import Any, Callable, Iterator

import av
import av.error
import structlog

from ..config import SourceConfig
from ..frames import FrameSlot, make_frame

_logger = structlog.get_logger(__name__)

# How long ``run`` waits for the decoder thread after asking it to stop. A thread
# blocked inside a network read can outlive this; it is a daemon and exits when the
# read times out (see _LIVE_TIMEOUT), so shutdown is never held hostage by it.
_JOIN_TIMEOUT_S = 2.0
# av.open(timeout=(open, read)): FFmpeg's interrupt callback aborts a connect or a read
# that hangs longer than this, which is what lets a dead RTSP peer turn into a reconnect.
_LIVE_TIMEOUT = (10.0, 5.0)
_BACKOFF_START_S = 0.2
# At the end of a file the decoder waits up to this long for the consumer to take the last frame.
END_GRACE_S = 0.5
# When playback is this far behind its schedule the debt is forgiven instead of being
# paid back in a burst of unpaced frames that the slot would only overwrite anyway.
_MAX_LAG_S = 0.5
# A corrupt stream can fail on every packet; log the first few and then a sample.
_LOG_FIRST_ERRORS = 10
_LOG_EVERY_ERRORS = 100
# Demux errors that repeat without a single good packet in between mean the input is
# unreadable rather than damaged in one place; give up instead of spinning.
_MAX_CONSECUTIVE_DEMUX_ERRORS = 50

_RTSP_OPTIONS = {
    "rtsp_transport": "tcp",  # UDP drops packets under load and smears whole GOPs
    "fflags": "nobuffer",
    "flags": "low_delay",
    "max_delay": "0",
    # Small probes: the SDP already describes the streams, and probing a live input
    # means buffering (latency) before the first frame.
    "probesize": "65536",
    "analyzeduration": "500000",
}


class SourceError(Exception):
    """An input that cannot be opened or read at all (missing file, not media, no video)."""


_DECODE_ERRORS: tuple[type[BaseException], ...] = (av.error.InvalidDataError,)


def _redact(uri: str) -> str:
    """``uri`` with any password in the userinfo replaced, for logs and errors."""
    return re.sub(r"(?<=://)([^/:@]*):[^/@]*@", r"\1:***@", uri)


class _AvSource:
    """Shared machinery: the worker thread, frame hand-over, decoding with error skipping."""

    kind: str = ""

    def __init__(self, cfg: SourceConfig, **extra: Any):
        self.cfg = cfg
        self.extra = extra  # accepted for the registry's uniform constructor; unused here
        self.decode_errors = 0
        self.frames_read = 0
        self._seq = 0

    # -- event-loop side -----------------------------------------------------------------

    async def run(self, slot: FrameSlot) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        done: asyncio.Future[None] = loop.create_future()
        exited = asyncio.Event()

        def finish(exc: BaseException | None) -> None:
            exited.set()
            if not done.done():
                if exc is None:
                    done.set_result(None)
                else:
                    done.set_exception(exc)

        def target() -> None:
            exc: BaseException | None = None
            try:
                self._work(slot, stop)
            except BaseException as e:  # handed to run(), which re-raises it
                exc = e
            try:
                loop.call_soon_threadsafe(finish, exc)
            except RuntimeError:
                pass  # the loop is already closed; nobody is left to tell

        thread = threading.Thread(target=target, name=f"source-{self.kind}-{self.cfg.stream}", daemon=True)
        thread.start()
        try:
            await done
        except asyncio.CancelledError:
            stop.set()
            try:
                await asyncio.wait_for(exited.wait(), _JOIN_TIMEOUT_S)
            except asyncio.TimeoutError:
                self._log().warning("source.stop_timeout", timeout_s=_JOIN_TIMEOUT_S)
            raise
        finally:
            stop.set()
            # The worker has returned (or timed out above); this only waits for the
            # thread's own teardown, so it is short enough to do on the loop.
            thread.join(timeout=0.2 if exited.is_set() else 0)

    # -- worker side ----------------------------------------------------------------------

    def _work(self, slot: FrameSlot, stop: threading.Event) -> None:
        raise NotImplementedError

    def _log(self) -> Any:
        # Bound per call, not once: binding freezes the structlog configuration of the
        # moment, and logging may be (re)configured after the source is built.
        return _logger.bind(stream=self.cfg.stream, kind=self.kind)

    def _deliver(self, frame: av.VideoFrame, slot: FrameSlot, stop: threading.Event, t_capture: float) -> None:
        image = frame.to_ndarray(format="rgb24")
        try:
            slot.put_threadsafe(make_frame(image, stream=self.cfg.stream, seq=self._seq,
                                           source=self.kind, t_capture=t_capture))
        except RuntimeError:  # event loop closed under us: nobody can take frames any more
            stop.set()
            return
        self._seq += 1
        self.frames_read += 1

    def _decode_error(self, exc: BaseException, where: str) -> None:
        self.decode_errors += 1
        n = self.decode_errors
        if n <= _LOG_FIRST_ERRORS or n % _LOG_EVERY_ERRORS == 0:
            self._log().warning("source.decode_error", where=where, error=str(exc), decode_errors=n)

    def _frames(self, container: av.container.InputContainer, stream: av.VideoStream,
                stop: threading.Event) -> Iterator[av.VideoFrame]:
        """Decoded frames of ``stream``; undecodable packets are counted and skipped.

        Stops between packets once ``stop`` is set. Errors other than damaged data
        (I/O, network) propagate to the caller.
        """
        packets = container.demux(stream)
        bad_demux = 0
        while not stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except _DECODE_ERRORS as exc:
                bad_demux += 1
                if bad_demux > _MAX_CONSECUTIVE_DEMUX_ERRORS:
                    raise
                self._decode_error(exc, where="demux")
                # A generator that raised is finished; the demuxer itself carries on
                # from its current position, so a fresh generator skips the damage.
                packets = container.demux(stream)
                continue
            bad_demux = 0
            try:
                frames = packet.decode()
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                # I/O failures surface in demux; whatever the decoder rejects is bad data.
                self._decode_error(exc, where="decode")
                continue
            yield from frames


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    return container.streams.video[0] if container.streams.video else None


class FileSource(_AvSource):
    """A video file, paced at its native rate (``realtime``) or decoded flat out; may loop."""

    kind = "file"

    def _open(self) -> av.container.InputContainer:
        uri = self.cfg.uri or ""
        try:
            return av.open(uri, options=dict(self.cfg.options))
        except (av.error.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SourceError(f"cannot open {self.kind} source {_redact(uri)!r}: {reason}") from exc

    def _work(self, slot: FrameSlot, stop: threading.Event) -> None:
        uri = _redact(self.cfg.uri or "")
        while not stop.is_set():
            container = self._open()
            try:
                stream = _video_stream(container)
                if stream is None:
                    raise SourceError(f"{self.kind} source {uri!r} has no video stream")
                stream.thread_type = "AUTO"  # throughput over latency: it is a file
                self._log().info("source.opened", uri=uri, width=stream.codec_context.width,
                                 height=stream.codec_context.height,
                                 rate=float(stream.average_rate or 0) or None, loop=self.cfg.loop)
                pace = self._pacer(stream)
                try:
                    for frame in self._frames(container, stream, stop):
                        pace(frame, stop)
                        if stop.is_set():
                            break
                        # A file has no capture clock: the moment the (paced) frame is
                        # handed on is when a live camera would have delivered it.
                        self._deliver(frame, slot, stop, time.monotonic())
                except av.error.FFmpegError as exc:
                    raise SourceError(f"reading {self.kind} source {uri!r} failed: {exc}") from exc
            finally:
                container.close()
            if stop.is_set() or not self.cfg.loop:
                break
        if not stop.is_set():
            self._log().info("source.ended", uri=uri, frames=self.frames_read, decode_errors=self.decode_errors)
            # a closed slot hands out nothing more: give the consumer a moment to take the last frame
            deadline = time.monotonic() + END_GRACE_S
            while not slot.drained and not stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
            slot.close_threadsafe()

    def _pacer(self, stream: av.VideoStream) -> Callable[[av.VideoFrame, threading.Event], None]:
        """A function that sleeps until each frame's presentation time, when ``realtime``."""
        if not self.cfg.realtime:
            return lambda frame, stop: None
        rate = float(stream.average_rate or stream.guessed_rate or 0) or self.cfg.fps
        base: list[float] = []  # [media time of the reference frame, monotonic time it was due]
        count = [0]

        def pace(frame: av.VideoFrame, stop: threading.Event) -> None:
            # pts may be missing (raw streams); then assume a constant rate.
            t_media = frame.time if frame.time is not None else count[0] / rate
            count[0] += 1
            now = time.monotonic()
            if not base or t_media < base[0]:  # first frame, or timestamps went backwards
                base[:] = [t_media, now]
                return
            delay = base[1] + (t_media - base[0]) - now
            if delay > 0:
                stop.wait(delay)  # wakes early on stop
            elif delay < -_MAX_LAG_S:
                base[:] = [t_media, now]

        return pace


class LavfiSource(FileSource):
    """An FFmpeg filter graph (``testsrc2`` by default) as a synthetic camera."""

    kind = "lavfi"

    def _open(self) -> av.container.InputContainer:
        c = self.cfg
        fps = f"{c.fps:g}"
        graph = c.uri or f"testsrc2=size={c.width}x{c.height}:rate={fps}"
        try:
            return av.open(graph, format="lavfi", options=dict(c.options))
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open lavfi graph {graph!r}: {exc}") from exc

    def _pacer(self, stream: av.VideoStream) -> Callable[[av.VideoFrame, threading.Event], None]:
        # A graph renders as fast as the CPU allows and its pts need not match cfg.fps
        # (a user graph may set its own rate), so pace by frame count at cfg.fps.
        if not self.cfg.realtime:
            return lambda frame, stop: None
        period = 1.0 / self.cfg.fps
        state = {"t0": 0.0, "n": -1}

        def pace(frame: av.VideoFrame, stop: threading.Event) -> None:
            now = time.monotonic()
            state["n"] += 1
            if state["n"] == 0:
                state["t0"] = now
                return
            delay = state["t0"] + state["n"] * period - now
            if delay > 0:
                stop.wait(delay)
            elif delay < -_MAX_LAG_S:
                state["t0"], state["n"] = now, 0

        return pace


class LiveSource(_AvSource):
    """An RTSP stream or a local camera: opened with low-latency options, reconnected forever.

    A live source never closes the slot: an end of stream or an error means the
    camera or the network hiccuped, so it retries with exponential backoff until the
    task is cancelled.
    """

    def __init__(self, cfg: SourceConfig, **extra: Any):
        super().__init__(cfg, **extra)
        self.kind = cfg.kind
        self.reconnects = 0  # reconnect attempts so far (health/metrics)

    def _open_args(self) -> tuple[str, str | None, dict[str, str]]:
        c = self.cfg
        fmt: str | None = None
        if c.kind == "camera":
            uri = c.uri or "/dev/video0"
            options: dict[str, str] = {}
            if sys.platform.startswith("linux"):
                fmt = "v4l2"
                options = {"video_size": f"{c.width}x{c.height}", "framerate": f"{c.fps:g}"}
            # Elsewhere FFmpeg has to guess the device format from the uri; set it explicitly
            # through options if that fails (e.g. avfoundation on macOS).
        else:
            uri = c.uri or ""
            options = dict(_RTSP_OPTIONS)
            if not uri.lower().startswith(("rtsp://", "rtsps://")):
                options.pop("rtsp_transport")  # meaningless to other protocols
        options.update(c.options)  # the user knows their camera better than our defaults
        return uri, fmt, options

    def _work(self, slot: FrameSlot, stop: threading.Event) -> None:
        uri, fmt, options = self._open_args()
        shown = _redact(uri)
        backoff = _BACKOFF_START_S
        attempt = 0
        while not stop.is_set():
            reason = "end of stream"
            container = None
            try:
                container = av.open(uri, format=fmt, options=dict(options), timeout=_LIVE_TIMEOUT)
                stream = _video_stream(container)
                if stream is None:
                    raise SourceError(f"{self.kind} source {shown!r} has no video stream")
                # Frame threading buffers one frame per thread: latency; slices do not.
                stream.thread_type = "SLICE"
                self._log().info("source.opened", uri=shown, width=stream.codec_context.width,
                                 height=stream.codec_context.height, attempt=attempt)
                flowing = False
                for frame in self._frames(container, stream, stop):
                    # No capture timestamp we could trust crosses an RTSP/V4L2 hop here, so
                    # the moment the decoder hands the frame over is the best estimate.
                    t_capture = time.monotonic()
                    if not flowing:
                        flowing = True
                        backoff, attempt = _BACKOFF_START_S, 0
                    self._deliver(frame, slot, stop, t_capture)
            except (av.error.FFmpegError, OSError, SourceError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                if container is not None:
                    container.close()
            if stop.is_set():
                break
            attempt += 1
            self.reconnects += 1
            delay = min(backoff, self.cfg.reconnect_max_s)
            self._log().warning("source.reconnect", uri=shown, attempt=attempt, delay_s=round(delay, 3),
                                reason=reason)
            stop.wait(delay)
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
        self._log().info("source.ended", uri=shown, frames=self.frames_read, decode_errors=self.decode_errors)
