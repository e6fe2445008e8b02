"""Action verification: did the picture change where (or after) the action happened?

For each action we keep a small grey thumbnail of the frame it was decided on.
Later frames (from the moment the executor said ``executed``, or
``verify_delay_s`` after publishing when nobody reports back) are compared with
it, around the action point and over the whole frame. Typing and keys act where
the last click was (the focused field), so that area is checked for them; an
action with no place of its own (a scroll, a key) also counts as changed when
much of any one area of that size changed (``region_fraction``: a list scrolled
inside a large screen moves a few per cent of it, under ``global_fraction``,
while a blinking caret moves one thumbnail pixel). The first frame that
differs gives ``changed`` and the time the change appeared; none within
``verify_window_s`` gives ``unchanged``, or ``timeout`` when an executor is
known on this stream but never confirmed the action.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..actions import NORM, ActionMessage, Feedback
from ..config import LoopConfig
from ..frames import Frame, grey_thumb

UNVERIFIED = frozenset({"wait", "done"})  # nothing is expected to change
FOCUSED = frozenset({"type", "key"})  # act on the focused element: where the last click was


def densest(mask: np.ndarray, kw: int, kh: int) -> float:
    """The largest share of True in any kh x kw window of ``mask`` (a box filter over its integral image)."""
    kh, kw = min(kh, mask.shape[0]), min(kw, mask.shape[1])
    ii = np.pad(mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[kh:, kw:] - ii[:-kh, kw:] - ii[kh:, :-kw] + ii[:-kh, :-kw]
    return float(sums.max()) / (kh * kw)


def region_changed(diff: np.ndarray, cfg: LoopConfig) -> bool:
    """Much of one area of the local size changed (``region_fraction``); ``diff``: changed thumbnail pixels."""
    h, w = diff.shape
    r = cfg.local_radius
    return densest(diff, max(1, round(2 * r * w / NORM)), max(1, round(2 * r * h / NORM))) > cfg.region_fraction


@dataclass(frozen=True)
class Verdict:
    action_id: str
    result: str  # changed | unchanged | timeout
    changed_fraction: float
    latency_ms: float  # action (executed, else published) to the frame showing the change
    action: ActionMessage = field(compare=False, repr=False)
    # what the watchdog needs to tell an element and a return to an earlier screen: the frame the action
    # was decided on, its thumbnail, and the thumbnail that showed the change
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    before: np.ndarray | None = field(default=None, compare=False, repr=False)
    after: np.ndarray | None = field(default=None, compare=False, repr=False)
    status: str | None = None  # the executor's report (executed | failed | rejected), when one came

    def payload(self) -> dict:
        return {"v": 1, "action_id": self.action_id, "result": self.result,
                "changed_fraction": round(self.changed_fraction, 4), "latency_ms": round(self.latency_ms, 1)}


@dataclass
class _Pending:
    msg: ActionMessage
    ref: np.ndarray
    t_sent: float
    anchor: tuple[int, int] | None = None  # where its effect should show (0..1000)
    image: np.ndarray | None = None  # the frame it was decided on
    t_executed: float | None = None
    status: str | None = None  # executor feedback, when any


class Verifier:
    def __init__(self, cfg: LoopConfig):
        self.cfg = cfg
        self.pending: dict[str, _Pending] = {}
        self.executor_seen = False  # once feedback arrives on this stream, wait for it
        self.counts = {"changed": 0, "unchanged": 0, "timeout": 0}
        self.last_point: tuple[int, int] | None = None  # the last click: where typing and keys land

    def track(self, frame: Frame, msg: ActionMessage, now: float | None = None,
              thumb: np.ndarray | None = None) -> None:
        if msg.type in UNVERIFIED:
            return
        ref = grey_thumb(frame.image) if thumb is None else thumb
        anchor = None
        if msg.x is not None and msg.y is not None:
            anchor = self.last_point = (msg.x, msg.y)
        elif msg.type in FOCUSED:
            anchor = self.last_point
        self.pending[msg.id] = _Pending(msg, ref, time.monotonic() if now is None else now, anchor, frame.image)

    def feedback(self, fb: Feedback, now: float | None = None) -> list[Verdict]:
        self.executor_seen = True
        p = self.pending.get(fb.action_id)
        if p is None:
            return []
        p.status = fb.status
        if fb.status != "executed":  # failed or rejected: nothing happened to look for
            return [self._close(p, "unchanged", 0.0, 0.0)]
        p.t_executed = time.monotonic() if now is None else now
        return []

    def observe(self, frame: Frame, now: float | None = None, thumb: np.ndarray | None = None) -> list[Verdict]:
        if not self.pending:
            return []
        now = time.monotonic() if now is None else now
        out = []
        for p in list(self.pending.values()):
            start = p.t_executed if p.t_executed is not None else (
                None if self.executor_seen else p.t_sent + self.cfg.verify_delay_s)
            if start is not None and frame.t_capture >= start:
                if thumb is None:
                    thumb = grey_thumb(frame.image)
                changed, fraction = self.compare(p, thumb)
                if changed:
                    out.append(self._close(p, "changed", fraction, (frame.t_capture - start) * 1e3, thumb))
                    continue
            if now - p.t_sent > self.cfg.verify_window_s:
                result = "timeout" if self.executor_seen and p.t_executed is None else "unchanged"
                out.append(self._close(p, result, 0.0, (now - p.t_sent) * 1e3))
        return out

    def compare(self, p: _Pending, thumb: np.ndarray) -> tuple[bool, float]:
        if thumb.shape != p.ref.shape:
            return True, 1.0  # the resolution changed: something certainly happened
        diff = np.abs(thumb - p.ref) > self.cfg.pixel_threshold
        global_fraction = float(diff.mean())
        h, w = diff.shape
        r = self.cfg.local_radius
        if p.anchor is not None:
            x0, x1 = int((p.anchor[0] - r) * w / NORM), int(np.ceil((p.anchor[0] + r) * w / NORM))
            y0, y1 = int((p.anchor[1] - r) * h / NORM), int(np.ceil((p.anchor[1] + r) * h / NORM))
            local = diff[max(0, y0):max(1, y1), max(0, x0):max(1, x1)]
            local_fraction = float(local.mean()) if local.size else 0.0
            if local_fraction > self.cfg.local_fraction:
                return True, global_fraction
        if p.msg.x is None and region_changed(diff, self.cfg):
            return True, global_fraction
        return global_fraction > self.cfg.global_fraction, global_fraction

    def _close(self, p: _Pending, result: str, fraction: float, latency_ms: float,
               after: np.ndarray | None = None) -> Verdict:
        self.pending.pop(p.msg.id, None)
        self.counts[result] += 1
        return Verdict(p.msg.id, result, fraction, latency_ms, p.msg, p.image, p.ref, after, p.status)
