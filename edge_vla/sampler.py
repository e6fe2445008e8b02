"""Motion-adaptive sampling: which frames go to the policy, and how often.

Motion is the mean absolute difference (0..1) between small grey thumbnails of
the current frame and the last sampled one (``grey_thumb``, a fraction of a
millisecond, computed once per frame and shared with the closed loop). Still scenes are sampled at ``min_fps``, busy ones at
``max_fps``, linear in between. The caller only offers frames when the policy
is free, so a busy policy simply means skipped frames (newest wins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SamplerConfig
from .frames import Frame, grey_thumb


def motion(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 1.0  # a resolution change is as big a change as there is
    return float(np.abs(a - b).mean())


@dataclass
class SamplerStats:
    offered: int = 0
    sampled: int = 0
    last_motion: float = 0.0
    fps_target: float = 0.0


class Sampler:
    def __init__(self, cfg: SamplerConfig):
        self.cfg = cfg
        self.stats = SamplerStats(fps_target=cfg.min_fps)
        self._last_thumb: np.ndarray | None = None
        self._last_t: float | None = None

    def target_fps(self, m: float) -> float:
        c = self.cfg
        a = (m - c.motion_low) / (c.motion_high - c.motion_low)
        return c.min_fps + min(1.0, max(0.0, a)) * (c.max_fps - c.min_fps)

    def offer(self, frame: Frame, thumb: np.ndarray | None = None) -> bool:
        """True when ``frame`` should go to the policy now; ``thumb`` is its ``grey_thumb``."""
        self.stats.offered += 1
        thumb = grey_thumb(frame.image) if thumb is None else thumb
        m = 1.0 if self._last_thumb is None else motion(thumb, self._last_thumb)
        fps = self.target_fps(m)
        self.stats.last_motion, self.stats.fps_target = m, fps
        if self._last_t is not None and frame.t_capture - self._last_t < 1.0 / fps:
            return False
        self._last_thumb, self._last_t = thumb, frame.t_capture
        self.stats.sampled += 1
        return True
