"""Visual defects and benign variation for the regression benchmark.

Defects change what a QA team cares about: a missing element, a moved element,
a changed label, a changed colour, a misaligned chart, a pop-up overlapping the
page. Benign variation changes pixels that must not raise an alarm: a blinking
text caret, a clock in the header, live chart data, compression noise, timing.

Everything works by editing the world's current task (``world.task``: widgets,
dialog) and then ``world.invalidate()`` so the cached static layer is redrawn.
Each defect returns its ground truth: pixel boxes of what changed.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edge_vla.actions import to_normalized
from edge_vla.sim.render import display_label, text_width
from edge_vla.sim.scene import Banner, Box, Button, Chart, Checkbox, Panel, Text, TextField, centre, clip
from edge_vla.sim.world import SimWorld

DEFECTS: tuple[str, ...] = ("missing_element", "moved_element", "changed_label", "changed_color",
                            "misaligned_chart", "overlapping_popup")
BENIGN: tuple[str, ...] = ("blinking_cursor", "clock_text", "chart_ticks", "compression_noise", "timing_shift")

_POPUPS = ("We value your privacy - Accept all?", "Chat with us!", "Get 10% off your first order",
           "New version available - Reload")
_LABELS = ("Continue", "Save changes", "Archive", "OK", "Submit order", "Next", "Export", "Delete",
           "Confirm", "Apply", "Upgrade now", "Sign out", "Retry", "Buy", "Sell", "Share")


@dataclass
class Injected:
    kind: str
    truth: list[Box]  # pixel boxes; a detection localises the defect when it overlaps one with IoU >= 0.5
    detail: str
    element: Box | None = None  # the whole element, for reference
    extra: dict = field(default_factory=dict)


def _visible(world: SimWorld, box: Box) -> bool:
    shown = clip(box, (0, 0, world.width, world.height))
    if shown is None or shown != box:
        return False
    g = world.task.dialog
    if g is not None and g.visible:
        return clip(box, g.box) is None
    return True


def _candidates(world: SimWorld, kinds: tuple[type, ...]) -> list:
    out = []
    for w in world.task.widgets:
        if isinstance(w, kinds) and _visible(world, w.box) and w.box[2] - w.box[0] >= 12:
            if isinstance(w, Button) and w.style == "close":
                continue
            out.append(w)
    return out


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _button_fill(world: SimWorld, style: str):
    """The colour a button of ``style`` shows most of (its fill, or its ink for outline buttons)."""
    th = world.task.theme
    if style == "primary":
        return th.primary
    return {"danger": th.danger, "secondary": th.secondary}[style]


def _far(a, b, margin: int = 60) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) >= margin


def inject_defect(world: SimWorld, kind: str, rng: random.Random) -> Injected | None:
    """Apply one defect of ``kind`` to the current screen; None when the screen has nothing for it."""
    W, H = world.width, world.height
    # The caller holds whatever lock guards the world (SimSource.lock) when a render thread runs.
    if kind == "missing_element":
        cands = _candidates(world, (Button, Checkbox, TextField))
        if not cands:
            return None
        w = rng.choice(cands)
        world.task.widgets.remove(w)
        res = Injected(kind, [w.box], f"removed {type(w).__name__} {w.label!r}", w.box)
    elif kind == "moved_element":
        cands = _candidates(world, (Button, Checkbox))
        if not cands:
            return None
        w = rng.choice(cands)
        old = w.box
        for _ in range(20):
            dx = rng.choice([-1, 1]) * int(W * rng.uniform(0.03, 0.08))
            dy = rng.choice([-1, 1, 0]) * int(H * rng.uniform(0.03, 0.08))
            new = (old[0] + dx, old[1] + dy, old[2] + dx, old[3] + dy)
            if clip(new, (0, 0, W, H)) == new:
                break
        else:
            return None
        w.box = new
        res = Injected(kind, [old, new, _union(old, new)], f"moved {w.label!r} by ({dx}, {dy}) px", old,
                       {"new": new})
    elif kind == "changed_label":
        cands = [b for b in _candidates(world, (Button,)) if b.label]
        if not cands:
            return None
        b = rng.choice(cands)
        th = world.task.theme
        new = rng.choice([x for x in _LABELS if x.lower() != b.label.lower()])
        old_w = text_width(display_label(b, th), b.size, th.font)
        b.label = new
        new_w = text_width(display_label(b, th), b.size, th.font)
        cx, cy = centre(b.box)
        tw = max(old_w, new_w)
        text_box = (int(cx - tw / 2), int(cy - b.size * 0.55), int(cx + tw / 2) + 1, int(cy + b.size * 0.55) + 1)
        res = Injected(kind, [clip(text_box, b.box) or b.box], f"label -> {new!r}", b.box)
    elif kind == "changed_color":
        cands = _candidates(world, (Button,))
        rng.shuffle(cands)
        for b in cands:
            if b.style not in ("primary", "danger", "secondary"):
                continue
            cur = _button_fill(world, b.style)
            options = [x for x in ("primary", "danger", "secondary") if _far(_button_fill(world, x), cur)]
            if options:
                b.style = rng.choice(options)
                res = Injected(kind, [b.box], f"{b.label!r} style -> {b.style}", b.box)
                break
        else:
            return None
    elif kind == "misaligned_chart":
        charts = [w for w in world.task.widgets if isinstance(w, Chart)]
        if not charts:
            return None
        c = charts[0]
        old = c.box
        dx = rng.choice([-1, 1]) * int(W * rng.uniform(0.03, 0.06))
        dy = rng.choice([-1, 1]) * int(H * rng.uniform(0.02, 0.05))
        new = clip((old[0] + dx, old[1] + dy, old[2] + dx, old[3] + dy), (0, 0, W, H))
        if new is None:
            return None
        c.box = new
        res = Injected(kind, [_union(old, new)], f"chart shifted by ({dx}, {dy}) px", old, {"new": new})
    elif kind == "overlapping_popup":
        # A consent/chat pop-up drawn over the page (not modal: the rest of the page stays as it was).
        pw, ph = int(W * rng.uniform(0.22, 0.34)), int(H * rng.uniform(0.12, 0.2))
        x0 = rng.randint(int(W * 0.05), W - pw - int(W * 0.05))
        y0 = rng.randint(int(H * 0.15), H - ph - int(H * 0.05))
        box = (x0, y0, x0 + pw, y0 + ph)
        world.task.widgets.append(Banner(box=box, label=rng.choice(_POPUPS), tone="info",
                                         size=max(10, int(H / 48))))
        res = Injected(kind, [box], f"pop-up at {box}", box)
    else:
        raise ValueError(f"unknown defect {kind!r}; expected one of {', '.join(DEFECTS)}")
    world.invalidate()
    return res


# --- benign variation -------------------------------------------------------------------------

class Clock:
    """A clock in the header that ticks every sim second (from ``start_s`` seconds past midnight)."""

    def __init__(self, world: SimWorld, start_s: float):
        self.world = world
        self.start_s = start_s
        header = next((w for w in world.task.widgets if isinstance(w, Panel) and w.style == "header"), None)
        hh = header.box[3] if header is not None else int(world.height * 0.07)
        size = max(10, int(hh * 0.32))
        x = int(world.width * 0.42)
        self.text = Text(box=(x, int(hh / 2 - size * 0.65), x + text_width("00:00:00", size, world.task.theme.font) + 4,
                              int(hh / 2 + size * 0.65)), label=self._label(), role="logo", size=size)
        world.task.widgets.append(self.text)
        world.after_advance.append(self.tick)
        world.invalidate()

    def _label(self) -> str:
        s = int(self.start_s + self.world.time) % 86400
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def tick(self) -> None:
        label = self._label()
        if label != self.text.label:
            self.text.label = label
            self.world.invalidate()


def focus_field(world: SimWorld) -> bool:
    """Click into the first text field so its caret blinks; False when the screen has none."""
    for w in world.task.widgets:
        if isinstance(w, TextField) and _visible(world, w.box):
            x, y = to_normalized(*centre(w.box), world.width, world.height)
            return world.execute({"type": "click", "x": x, "y": y}).status == "executed"
    return False


def reseed_charts(world: SimWorld, seed: int) -> int:
    """Live chart data that differs from the golden run's (same layout, other ticks)."""
    n = 0
    for w in world.task.widgets:
        if isinstance(w, Chart):
            w.rng = random.Random(seed)
            n += 1
    return n


def compress(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip: the noise a camera or a video codec adds."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def hide_dialog(world: SimWorld) -> None:
    """No timed pop-ups: a benchmark screen keeps the same modal state in golden and live runs."""
    g = world.task.dialog
    if g is not None:
        g.visible = False
        g.appear_at = None
    world.invalidate()
