"""Region of interest: a low-resolution full view plus a high-resolution crop of the focus area.

The model emits ``FOCUS X0 Y0 X1 Y1 END`` (grammar, full-frame bins); from
then on each frame is encoded as two views — the whole frame at the model's
input size and a square crop around the focus box — and the model's
coordinates refer to the crop. The crop is cut at *exactly* the normalized box
(PIL resize with a fractional source box), so ``crop_to_frame`` maps a crop
coordinate back to full-frame 0..1000 with no other error than integer
rounding. A non-point action (or a new FOCUS) ends the focus.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

from ..actions import NORM, POINT_TYPES, Action, crop_to_frame
from .avoid import dead_tokens
from .vlm import preprocess

SAME_AIM = 0.5  # a re-aimed crop overlapping the one shown this much (IoU) shows the same thing


def crop_box(focus: tuple[int, int, int, int], width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """A square (in pixels) crop holding ``focus``, side >= scale * short side, inside the frame; normalized ints."""
    fx0, fy0, fx1, fy1 = (focus[0] * width / NORM, focus[1] * height / NORM, focus[2] * width / NORM,
                          focus[3] * height / NORM)
    side = min(min(width, height), max(scale * min(width, height), fx1 - fx0, fy1 - fy0))
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    x0 = min(max(0.0, cx - side / 2), width - side)
    y0 = min(max(0.0, cy - side / 2), height - side)
    box = (int(math.floor(x0 * NORM / width)), int(math.floor(y0 * NORM / height)),
           int(math.ceil((x0 + side) * NORM / width)), int(math.ceil((y0 + side) * NORM / height)))
    return (box[0], box[1], min(NORM, box[2]), min(NORM, box[3]))


def crop_view(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The exact normalized region ``box`` of ``image`` resized to size x size -> [1,3,size,size] in 0..1."""
    h, w = image.shape[:2]
    src = (box[0] * w / NORM, box[1] * h / NORM, box[2] * w / NORM, box[3] * h / NORM)
    small = Image.fromarray(image).resize((size, size), Image.BILINEAR, box=src)
    return (np.asarray(small, dtype=np.float32) * (1 / 255)).transpose(2, 0, 1)[None]


def map_action(action: Action, box: tuple[int, int, int, int]) -> Action:
    """Coordinates predicted inside the crop -> full frame."""
    data = action.fields()
    for fx, fy in (("x", "y"), ("x2", "y2")):
        if fx in data:
            data[fx], data[fy] = crop_to_frame(data[fx], data[fy], box)
    return Action(**data)


class RoiState:
    def __init__(self, runtime):
        self.rt = runtime
        self.box: tuple[int, int, int, int] | None = None
        self.scale = float(getattr(runtime.cfg, "roi_crop_scale", 0.35))

    def infer(self, image: np.ndarray, instruction: str, avoid: Iterable = frozenset()):
        rt, s = self.rt, self.rt.image_size
        h, w = image.shape[:2]
        pixels = preprocess(image, s)
        t0 = time.perf_counter()
        full = rt.encode_view(pixels)  # once: every pass shows the whole frame
        stages: dict[str, float] = {"vision": (time.perf_counter() - t0) * 1e3}
        # at most: a global pass that sets the focus, the two-view pass, and one more two-view pass
        # when that one re-aims (the target was not in the crop) - so a single frame can still hit
        for _ in range(3):
            views = [full] if self.box is None else [full, crop_view(image, self.box, s)]
            box = self.box
            dead = dead_tokens(rt.grammar, avoid, None if box is None else (lambda x, y: crop_to_frame(x, y, box)))
            if dead is not None and box is not None:
                dead = self._or_same_aim(dead, box, w, h)
            decoded, st = rt.decode_view(views, instruction, dead)
            for k, v in st.items():
                stages[k] = stages.get(k, 0.0) + v
            if decoded.focus_box is not None:
                self.box = crop_box(decoded.focus_box, w, h, self.scale)
                continue
            action = decoded.action
            if len(views) == 2:
                action = map_action(action, self.box)
                if action.type not in POINT_TYPES:
                    self.box = None
            return action, stages
        return Action(type="wait"), stages

    def _or_same_aim(self, dead: Callable[[list[int]], bool], box: tuple[int, int, int, int], w: int,
                     h: int) -> Callable[[list[int]], bool]:
        """``dead``, and a re-aim at (nearly) the crop already shown: with its clicks dead there it would
        look at the same pixels and find them again (three passes, then nothing)."""
        grammar = self.rt.grammar

        def dead_or_same(tokens: list[int]) -> bool:
            focus = grammar.to_decoded(tokens).focus_box
            if focus is None:
                return dead(tokens)
            b = crop_box(focus, w, h, self.scale)
            ix = max(0, min(b[2], box[2]) - max(b[0], box[0]))
            iy = max(0, min(b[3], box[3]) - max(b[1], box[1]))
            union = (b[2] - b[0]) * (b[3] - b[1]) + (box[2] - box[0]) * (box[3] - box[1]) - ix * iy
            return ix * iy > SAME_AIM * union

        return dead_or_same
