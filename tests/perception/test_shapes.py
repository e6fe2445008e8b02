"""Non-text shapes found in real simulator frames, scored against the simulator's own widgets.

``python -m tests.perception.test_shapes [worlds]`` prints the recall / false-shape / timing table.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from edge_vla.perception.shapes import Shape, find_shapes
from edge_vla.sim import TASK_KINDS, THEMES, SimWorld
from edge_vla.sim.scene import Button, Checkbox, Panel, TextField

RESOLUTIONS = ((390, 844), (1280, 720), (1920, 1080), (3840, 2160))
Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _clip(box: Box, w: int, h: int) -> Box | None:
    b = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
    return b if b[0] < b[2] and b[1] < b[3] else None


@dataclass
class Truth:
    """What a frame shows, by the categories the shapes are scored on."""

    buttons: list[Box] = field(default_factory=list)
    fields: list[Box] = field(default_factory=list)
    checks: list[tuple[Box, bool]] = field(default_factory=list)  # tick square (or switch), checked
    close: Box | None = None
    dialog: Box | None = None
    others: list[Box] = field(default_factory=list)  # list rows, lists, charts, banners: no false shapes


def truth_of(world: SimWorld) -> Truth:
    w, h = world.width, world.height
    t = Truth()
    task = world.task
    modal = task.dialog if task.dialog is not None and task.dialog.visible else None

    def hidden(box: Box) -> bool:  # mostly under the modal: not on screen
        if modal is None:
            return False
        m = modal.box
        ix = max(0, min(box[2], m[2]) - max(box[0], m[0]))
        iy = max(0, min(box[3], m[3]) - max(box[1], m[1]))
        return ix * iy >= 0.5 * (box[2] - box[0]) * (box[3] - box[1])

    on_modal = list(modal.children) if modal else []
    for wd in list(task.widgets) + on_modal:
        box = _clip(wd.box, w, h)
        if box is None or (wd not in on_modal and hidden(box)):
            continue
        if isinstance(wd, Button):
            if wd.style != "close":
                t.buttons.append(box)
        elif isinstance(wd, TextField):
            t.fields.append(box)
        elif isinstance(wd, Checkbox):
            s = wd.side
            x0, y0 = wd.box[0], (wd.box[1] + wd.box[3]) // 2 - s // 2
            knob = int(s * 1.8) if task.theme.switches else s
            t.checks.append(((x0, y0, x0 + knob, y0 + s), wd.checked))
        elif isinstance(wd, Panel):
            if wd.style == "card":
                t.others.append(box)
        else:
            for _, _, b in wd.parts():
                if (c := _clip(b, w, h)) is not None:
                    t.others.append(c)
    if task.toast is not None and task.toast.visible:
        t.others.append(task.toast.box)
    if modal is not None:
        t.dialog = modal.box
        if modal.close is not None:
            t.close = modal.close.box
    return t


def best(shapes: list[Shape], kind: str, box: Box) -> Shape | None:
    found = [s for s in shapes if s.kind == kind and iou(s.box, box) >= 0.5]
    return max(found, key=lambda s: iou(s.box, box), default=None)


def world(i: int, task: str | None = None) -> SimWorld:
    """The i-th scored world: resolutions, themes and task kinds in turn, odd seeds."""
    w, h = RESOLUTIONS[i % len(RESOLUTIONS)]
    kind = task or TASK_KINDS[(i // len(RESOLUTIONS)) % len(TASK_KINDS)]
    sim = SimWorld(seed=2 * i + 1, width=w, height=h, theme=THEMES[i % len(THEMES)], task=kind)
    sim.advance(1.0)
    return sim


@dataclass
class Score:
    hits: dict[str, list[int]] = field(default_factory=dict)  # category -> [found, total]
    false: int = 0
    screens: int = 0

    def add(self, cat: str, ok: bool) -> None:
        n = self.hits.setdefault(cat, [0, 0])
        n[0] += ok
        n[1] += 1

    def recall(self, cat: str) -> float:
        found, total = self.hits.get(cat, [0, 0])
        return found / total if total else 1.0


def score(sim: SimWorld, shapes: list[Shape], into: Score) -> None:
    t = truth_of(sim)
    into.screens += 1
    for b in t.buttons:
        into.add("button", best(shapes, "box", b) is not None)
    for b in t.fields:
        into.add("text_field", best(shapes, "box", b) is not None)
    for b, checked in t.checks:
        s = best(shapes, "checkbox", b)
        into.add("checkbox", s is not None)
        into.add("checkbox+state", s is not None and s.checked == checked)
    if t.close is not None:
        into.add("close", best(shapes, "icon", t.close) is not None)
    if t.dialog is not None:
        into.add("dialog", best(shapes, "panel", t.dialog) is not None)
    targets = {"box": t.buttons + t.fields + t.others, "checkbox": [b for b, _ in t.checks],
               "icon": [t.close] if t.close else [], "panel": t.others + ([t.dialog] if t.dialog else [])}
    for s in shapes:
        if not any(iou(s.box, b) >= 0.5 for b in targets[s.kind]):
            into.false += 1


# --- tests ------------------------------------------------------------------------------------

def test_fields_checkboxes_and_close_crosses_are_found_across_resolutions() -> None:
    # 16 worlds: every resolution and theme; floors a little under what 80 worlds measure
    total = Score()
    for i in range(16):
        for task in ("fill_and_submit", "checkbox", "dismiss_popup_then_buy"):
            sim = world(i, task)
            score(sim, find_shapes(sim.render()), total)
    assert total.recall("text_field") >= 0.9, total.hits
    assert total.recall("checkbox") >= 0.9, total.hits
    assert total.recall("checkbox+state") >= 0.9, total.hits
    assert total.recall("close") >= 0.9, total.hits
    assert total.recall("dialog") >= 0.9, total.hits
    assert total.false <= 1.5 * total.screens, (total.false, total.screens)


def test_a_dialog_close_cross_at_4k_and_on_a_phone() -> None:
    for size in ((3840, 2160), (390, 844)):
        found = 0
        for seed in (1, 3, 5, 7):
            sim = SimWorld(seed=seed, width=size[0], height=size[1], task="dismiss_popup_then_buy")
            close = sim.task.dialog.close
            found += best(find_shapes(sim.render()), "icon", close.box) is not None
        assert found >= 3, size


def test_region_limits_the_search_and_boxes_stay_in_frame_pixels() -> None:
    sim = SimWorld(seed=3, width=1280, height=720, theme="light", task="dismiss_popup_then_buy")
    image = sim.render()
    dialog = sim.task.dialog.box
    region = (dialog[0] - 10, dialog[1] - 10, dialog[2] + 10, dialog[3] + 10)
    inside = find_shapes(image, region)
    assert inside
    for s in inside:
        assert region[0] <= s.box[0] < s.box[2] <= region[2] and region[1] <= s.box[1] < s.box[3] <= region[3]
    everywhere = find_shapes(image)
    assert best(inside, "icon", sim.task.dialog.close.box) is not None
    assert best(everywhere, "icon", sim.task.dialog.close.box) is not None
    # the same shapes as a search of the whole frame finds there, no fewer and no other
    assert set(inside) == {s for s in everywhere if region[0] <= s.box[0] and region[1] <= s.box[1]
                           and s.box[2] <= region[2] and s.box[3] <= region[3]}
    assert find_shapes(image, (0, 0, 5, 5)) == []


@pytest.mark.parametrize("size", [(720, 1280), (8, 8), (1, 1), (3, 300)])
def test_blank_frames_have_no_shapes(size: tuple[int, int]) -> None:
    assert find_shapes(np.full((*size, 3), 240, np.uint8)) == []


@pytest.mark.parametrize("size", [(720, 1280), (8, 8), (2160, 3840)])
def test_noise_and_tiny_frames_do_not_crash(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    shapes = find_shapes(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    assert all(s.kind in ("box", "checkbox", "icon", "panel") for s in shapes)


# --- the measurement table ----------------------------------------------------------------------

def main(n: int = 60) -> None:
    by_res: dict[tuple[int, int], Score] = {r: Score() for r in RESOLUTIONS}
    times: dict[tuple[int, int], list[float]] = {r: [] for r in RESOLUTIONS}
    for i in range(n):
        for task in (None, "dismiss_popup_then_buy", "checkbox"):
            sim = world(i, task)
            image = sim.render()
            t0 = time.perf_counter()
            shapes = find_shapes(image)
            times[(sim.width, sim.height)].append((time.perf_counter() - t0) * 1000)
            score(sim, shapes, by_res[(sim.width, sim.height)])
    cats = ("button", "text_field", "checkbox", "checkbox+state", "close", "dialog")
    print(f"{'resolution':>11} " + " ".join(f"{c:>14}" for c in cats) + "  false/scr  p50ms  p95ms")
    total = Score()
    for r, s in by_res.items():
        cells = " ".join(f"{s.recall(c):>6.2f} ({s.hits.get(c, [0, 0])[1]:>4})" for c in cats)
        ts = sorted(times[r])
        print(f"{r[0]:>5}x{r[1]:<5} {cells}  {s.false / s.screens:>9.2f}  {statistics.median(ts):5.1f}"
              f"  {ts[int(0.95 * (len(ts) - 1))]:5.1f}")
        for c, (f, tot) in s.hits.items():
            k = total.hits.setdefault(c, [0, 0])
            k[0] += f
            k[1] += tot
        total.false += s.false
        total.screens += s.screens
    cells = " ".join(f"{total.recall(c):>6.2f} ({total.hits.get(c, [0, 0])[1]:>4})" for c in cats)
    print(f"{'all':>11} {cells}  {total.false / total.screens:>9.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
