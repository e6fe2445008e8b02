"""The Frame: one decoded picture plus the clocks every later stage measures from; the slot that
hands the newest one over; the grey thumbnail every stage that compares frames shares.

A Frame is immutable; stages that add timing return a new one via ``stamp``.
``t_capture`` is ``time.monotonic()`` at the moment the picture entered the
process (or the capture time, when the source knows it), ``wall_ts`` the matching
unix time that goes into payloads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3, uint8, RGB
    stream: str
    seq: int
    t_capture: float  # time.monotonic()
    wall_ts: float  # time.time() matching t_capture
    source: str = ""
    instruction: str | None = None  # a source that knows the task (the simulator) may say it
    stamps: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def stamp(self, stage: str, t: float | None = None) -> "Frame":
        """A copy with ``stage`` stamped at monotonic time ``t`` (now by default)."""
        stamps = dict(self.stamps)
        stamps[stage] = time.monotonic() if t is None else t
        return dataclasses.replace(self, stamps=MappingProxyType(stamps))


def make_frame(
    image: np.ndarray,
    stream: str,
    seq: int,
    source: str = "",
    instruction: str | None = None,
    t_capture: float | None = None,
) -> Frame:
    """Build a Frame stamped now; checks the picture is an RGB uint8 array."""
    check_image(image)
    mono = time.monotonic()
    t = mono if t_capture is None else t_capture
    wall = time.time() - (mono - t)
    return Frame(image=image, stream=stream, seq=seq, t_capture=t, wall_ts=wall,
                 source=source, instruction=instruction)


class BadFrame(ValueError):
    """A picture that the pipeline cannot use (wrong shape, dtype, size)."""


def check_image(image: object) -> None:
    if not isinstance(image, np.ndarray):
        raise BadFrame(f"frame is {type(image).__name__}, expected a numpy array")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadFrame(f"frame has shape {image.shape} dtype {image.dtype}, expected HxWx3 uint8")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise BadFrame(f"frame is {image.shape[1]}x{image.shape[0]}, smaller than 8x8")


class FrameSlot:
    """A one-frame mailbox: the newest frame wins, older unread ones are dropped.

    Producers call ``put`` on the event loop or ``put_threadsafe`` from a decoder
    thread; they never wait. The consumer awaits ``next(after_seq)``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self._loop = loop or asyncio.get_running_loop()
        self._frame: Frame | None = None
        self._taken = True
        self._event = asyncio.Event()
        # Frames handed over by a decoder thread wait here, one at most: a busy loop
        # must not collect a backlog of scheduled callbacks each holding a frame.
        self._handover: Frame | None = None
        self._handover_lock = threading.Lock()
        self.written = 0
        self.overwritten = 0  # frames replaced before anyone took them
        self.closed = False

    @property
    def latest(self) -> Frame | None:
        return self._frame

    def put(self, frame: Frame) -> None:
        if not self._taken:
            self.overwritten += 1
        self._frame = frame
        self._taken = False
        self.written += 1
        self._event.set()

    def put_threadsafe(self, frame: Frame) -> None:
        with self._handover_lock:
            scheduled = self._handover is not None
            if scheduled:  # the loop has not picked up the previous one: it is replaced unseen
                self.overwritten += 1
                self.written += 1
            self._handover = frame
        if not scheduled:
            self._loop.call_soon_threadsafe(self._take_handover)

    def _take_handover(self) -> None:
        with self._handover_lock:
            frame, self._handover = self._handover, None
        if frame is not None:
            self.put(frame)

    @property
    def drained(self) -> bool:
        """Every frame put has been taken or replaced (readable from the producer's thread)."""
        return self._taken and self._handover is None

    def close(self) -> None:
        """The source has ended: waiting consumers get ``None``."""
        self.closed = True
        self._event.set()

    def close_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.close)

    async def next(self, after_seq: int = -1) -> Frame | None:
        """The newest frame with ``seq > after_seq``; ``None`` once the slot is closed."""
        while True:
            if self.closed:  # once closed, nothing more is handed out, even a newer frame
                return None
            frame = self._frame
            if frame is not None and frame.seq > after_seq:
                self._taken = True
                return frame
            self._event.clear()
            await self._event.wait()


THUMB_W = 64


def grey_thumb(image: np.ndarray) -> np.ndarray:
    """A grey picture about 64 px wide, values 0..1: the one cheap summary of a frame that the
    sampler (motion), the verifier (action effects) and the watchdog (screen states) share.

    Strides first, then block-averages (striding alone aliases text and noise).
    """
    h, w = image.shape[:2]
    step = max(1, w // (THUMB_W * 4))
    small = image[::step, ::step].mean(axis=2, dtype=np.float32) * (1 / 255)
    k = max(1, small.shape[1] // THUMB_W)
    hh, ww = (small.shape[0] // k) * k, (small.shape[1] // k) * k
    if hh == 0 or ww == 0:
        return small
    return small[:hh, :ww].reshape(hh // k, k, ww // k, k).mean(axis=(1, 3))
