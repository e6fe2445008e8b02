"""Seeded on-the-fly training data from the simulator (numpy + Pillow only).

Sample ``i`` of a stream is a pure function of ``(stream seed, split, i)``: a
random world (resolution from phone portrait to 4K, theme, task kind), a
random history (time advanced so pop-ups appear and validation errors clear,
some teacher steps, sometimes a mistaken click), one rendered frame with
optional JPEG noise, and the teacher's next action. Each state gives one or
more samples in the runtime's two RoI stages:

- ``global``: views ``[full]`` -> ``FOCUS x0 y0 x1 y1 END`` around the target
  (or the non-point action: type/key/scroll/wait/done);
- ``crop``: views ``[full, crop]`` -> ``click X Y END`` in crop coordinates when
  the target is inside the crop, else ``FOCUS`` (full frame) to re-aim.

Each sample also says, per image-token cell of each view, which letters and digits
are written there (``cell_chars``: the union over the sim's elements overlapping
the cell). That dense reading target is what the student lacked: its crop stage
found the target's region but clicked a neighbour with a similar label.

Views are cut with the runtime's own ``preprocess``/``crop_view`` and targets
are encoded with ``ActionGrammar.encode``, so training sees exactly what the
exported bundle sees. Train and held-out worlds use disjoint seeds (even / odd),
and two type faces (``HELD_OUT_FONTS``) are never trained on: held-out screens set
in them measure how the student reads a face it has never seen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..actions import NORM, Action, to_normalized, to_pixels
from ..runtime.grammar import KEYS, ActionGrammar, ActionVocab
from ..runtime.roi import crop_view
from ..runtime.vlm import preprocess
from ..sim import FONTS, THEMES, TASK_KINDS, SimWorld
from ..sim.defects import compress

# (width, height, weight): phone portrait .. 4K, plus tablets and odd laptop sizes
RESOLUTIONS: tuple[tuple[int, int, float], ...] = (
    (390, 844, 1.0), (412, 915, 1.0), (768, 1024, 0.7), (1024, 768, 0.7), (1280, 720, 1.2),
    (1366, 768, 1.0), (1440, 900, 0.8), (1920, 1080, 1.5), (2560, 1440, 0.8), (3840, 2160, 0.5),
)
EVAL_RESOLUTIONS: tuple[tuple[int, int], ...] = ((390, 844), (1280, 720), (1920, 1080), (3840, 2160))
POINT_KINDS = ("click", "double_click", "right_click")
BYTES_TOKENIZER = {"kind": "bytes", "offset": 4, "max_tokens": 64}
_PREFIX = ("", "", "", "please ", "now ", "go ahead and ", "quickly ")
_SUFFIX = ("", "", "", ".", " now", " please", "!")
CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789"
# elements whose label is not written across their box (a list's or chart's name, a dialog's title)
_UNREAD_KINDS = ("list", "chart", "dialog")
# faces of the sim that training worlds never use (a serif and a monospace, each with a trained sibling)
HELD_OUT_FONTS = ("liberation-serif", "dejavu-sans-mono")
TRAIN_FONTS = tuple(f for f in FONTS if f not in HELD_OUT_FONTS)
# Histories of teacher steps finish a one-click task often: left alone, half of all labels were ``done``
# (measured over 400 states), which both starved the point labels and taught the student to stop at once.
# Keep this share of finished histories; the rest step back to the state before the last action.
DONE_KEEP = 0.25
# a point action right after a click: share of crop samples cut where the runtime's crop still is
AFTER_CLICK_CROP = 0.5
# fill-in tasks: share of states taken right where the teacher types (else few states are; the
# student never learned to type: it clicked the focused field again)
TYPING_STATES = 0.3


@dataclass
class Curriculum:
    """What the stream draws, interpolated from ``start`` to ``end`` over ``samples`` samples seen."""

    samples: int = 20000

    def at(self, seen: int) -> dict[str, Any]:
        p = 1.0 if self.samples <= 0 else min(1.0, max(0.0, seen / self.samples))
        return {
            "progress": p,
            # easy first: tight crops (target big at the model's input), few history steps, little noise
            "crop_stage": 0.8 - 0.25 * p,             # share of crop-stage samples (rest: global)
            "crop_side": (0.8, 1.4 + 1.6 * p),        # crop side in units of the model's input size
            "frame_crop": 0.5 * p,                    # share of crops sized like the runtime's (fraction of short side)
            "history": 0.3 + 0.5 * p,                 # chance of teacher steps before the labelled state
            "mistake": 0.15 * p,                      # chance of a wrong click in the history
            "jpeg": 0.15 + 0.35 * p,
            "point_kinds": 1.0 - 0.4 * p,             # prefer tasks whose next action is a click, early on
        }


@dataclass
class Sample:
    views: np.ndarray              # [V, 3, S, S] uint8 (exactly the runtime's views * 255)
    instruction: str
    tokens: list[int]              # target action tokens (grammar encoding, END included)
    pointer_view: int = -1         # view holding the target (-1: no pointer label)
    pointer_cells: list[int] = field(default_factory=list)  # token cells overlapping the target
    cell_chars: np.ndarray | None = None  # [V, grid*grid, len(CHARSET)] uint8: letters written in each cell
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- worlds and histories
def world_seed(rng: random.Random, split: str) -> int:
    return rng.randrange(1 << 29) * 2 + (0 if split == "train" else 1)


def world_spec(rng: random.Random, split: str, point_kinds: float = 0.6) -> dict:
    if rng.random() < 0.2:  # any aspect: odd windows, split screens
        w, h = rng.randint(360, 2560), rng.randint(360, 1600)
    else:
        w, h, _ = rng.choices(RESOLUTIONS, weights=[r[2] for r in RESOLUTIONS])[0]
    easy = ("click_button", "checkbox", "dismiss_popup_then_buy")
    kind = rng.choice(easy) if rng.random() < point_kinds * 0.5 else rng.choice(TASK_KINDS)
    return {"seed": world_seed(rng, split), "width": w, "height": h, "theme": rng.choice(THEMES), "task": kind,
            "fonts": list(TRAIN_FONTS) if split == "train" else None}


def vocab_action(action: Action, vocab: ActionVocab) -> Action | None:
    """A teacher action expressed in the runtime's action vocabulary (None: not expressible).

    ``key ctrl+a`` (select all) has no token: ``backspace`` reaches the same state over
    a few steps. Scrolls lose their magnitude and anchor (``scroll DIR`` of the grammar).
    """
    t = action.type
    if t in POINT_KINDS or t in ("wait", "done", "reset"):
        return action
    if t == "type":
        text = "".join(c for c in (action.text or "") if c in vocab.text_chars)[: vocab.max_text]
        return Action(type="type", text=text) if text else None
    if t == "key":
        k = (action.key or "").lower()
        if k in ("ctrl+a", "cmd+a", "meta+a"):
            return Action(type="key", key="backspace")
        return Action(type="key", key=k) if k in KEYS else None
    if t == "scroll":
        if action.dy:
            return Action(type="scroll", dx=0, dy=vocab.scroll_step if action.dy > 0 else -vocab.scroll_step)
        return None
    return None


def oracle_action(world: SimWorld, vocab: ActionVocab) -> tuple[Action | None, tuple | None]:
    """The oracle's next action in vocabulary terms and the target element's pixel box (clicks)."""
    a = vocab_action(world.oracle(), vocab)
    box = None
    if a is not None and a.type in POINT_KINDS:
        tgt = world.target
        box = tuple(tgt.box) if tgt is not None else None
    return a, box


def replay(spec: dict, history: list) -> SimWorld:
    """Rebuild a state: the world from ``spec``, then ``history`` = [[dt, action dict | None], ...]."""
    w = SimWorld(seed=spec["seed"], width=spec["width"], height=spec["height"], theme=spec["theme"],
                 task=spec["task"], fonts=spec.get("fonts"))
    for dt, act in history:
        if act is not None:
            w.execute(Action(**act))
        if dt:
            w.advance(float(dt))
    return w


def last_click(history: list) -> tuple[int, int] | None:
    """The point of the last action in ``history`` when it was a click (the runtime's crop is still
    around it; any other action ends the crop); None otherwise."""
    acts = [a for _, a in history if a is not None]
    if acts and acts[-1].get("type") in POINT_KINDS:
        return acts[-1]["x"], acts[-1]["y"]
    return None


def history_to_typing(world: SimWorld, rng: random.Random, vocab: ActionVocab) -> list:
    """Teacher steps up to the one that types (field clicked, old text cleared)."""
    dt = rng.uniform(0.0, 0.6)
    world.advance(dt)
    hist: list = [[dt, None]]
    for _ in range(6):
        a = vocab_action(world.oracle(), vocab)
        if world.success or a is None or a.type in ("type", "done", "wait", "reset"):
            break
        world.execute(a)
        dt = rng.uniform(0.05, 0.8)
        world.advance(dt)
        hist.append([dt, a.fields()])
    return hist


def random_history(world: SimWorld, rng: random.Random, vocab: ActionVocab, cur: dict) -> list:
    hist: list = []
    dt = rng.choice([0.0, rng.uniform(0.0, 0.6), rng.uniform(0.3, 3.2)])
    world.advance(dt)
    hist.append([dt, None])
    if rng.random() < cur["history"]:
        for _ in range(rng.randint(1, 3)):
            if world.success:
                break
            if rng.random() < cur["mistake"]:
                x, y = rng.randint(0, NORM), rng.randint(0, NORM)
                a = Action(type="click", x=x, y=y)
            else:
                a = vocab_action(world.oracle(), vocab)
                if a is None or a.type in ("done", "wait", "reset"):
                    a = None
            if a is not None:
                world.execute(a)
            dt = rng.uniform(0.05, 0.8)
            world.advance(dt)
            hist.append([dt, a.fields() if a is not None else None])
    return hist


# ----------------------------------------------------------------------------- views and labels
def cells_for_box(box_n: tuple[float, float, float, float], grid: int) -> list[int]:
    """Cells of a grid x grid token map that overlap a box given in view-normalized 0..1000 units."""
    x0, y0, x1, y1 = (max(0.0, min(float(NORM), v)) for v in box_n)
    if x1 <= x0 or y1 <= y0:
        return []
    c0, c1 = int(x0 * grid / NORM), min(grid - 1, int(math.ceil(x1 * grid / NORM)) - 1)
    r0, r1 = int(y0 * grid / NORM), min(grid - 1, int(math.ceil(y1 * grid / NORM)) - 1)
    return [r * grid + c for r in range(r0, r1 + 1) for c in range(c0, max(c0, c1) + 1)]


def box_to_norm(box_px, w: int, h: int) -> tuple[float, float, float, float]:
    return (box_px[0] * NORM / w, box_px[1] * NORM / h, box_px[2] * NORM / w, box_px[3] * NORM / h)


def frame_to_crop(nx: float, ny: float, crop: tuple[int, int, int, int]) -> tuple[float, float]:
    """Inverse of ``actions.crop_to_frame`` (before rounding)."""
    return ((nx - crop[0]) * NORM / (crop[2] - crop[0]), (ny - crop[1]) * NORM / (crop[3] - crop[1]))


def crop_around(px: float, py: float, side: float, w: int, h: int, rng: random.Random,
                contain: bool = True) -> tuple[int, int, int, int]:
    """A square pixel crop of ``side`` holding pixel (px, py) at a random place (or anywhere), normalized
    with the same rounding as ``runtime.roi.crop_box``."""
    side = max(8.0, min(float(min(w, h)), side))
    if contain:
        x0 = px - rng.uniform(0.1, 0.9) * side
        y0 = py - rng.uniform(0.1, 0.9) * side
    else:
        x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    x0 = min(max(0.0, x0), w - side)
    y0 = min(max(0.0, y0), h - side)
    box = (int(math.floor(x0 * NORM / w)), int(math.floor(y0 * NORM / h)),
           int(math.ceil((x0 + side) * NORM / w)), int(math.ceil((y0 + side) * NORM / h)))
    return (box[0], box[1], min(NORM, box[2]), min(NORM, box[3]))


def label_chars(label: str) -> np.ndarray:
    out = np.zeros(len(CHARSET), np.uint8)
    for ch in label.lower():
        i = CHARSET.find(ch)
        if i >= 0:
            out[i] = 1
    return out


def readable(elements) -> list[tuple[str, tuple]]:
    """(label, pixel box) of the elements whose label is written inside their box."""
    return [(e.label, tuple(e.box)) for e in elements if e.label and e.kind not in _UNREAD_KINDS]


def cell_chars(texts: list[tuple[str, tuple]], view: tuple, w: int, h: int, grid: int) -> np.ndarray:
    """[grid*grid, len(CHARSET)]: for each token cell of the view cut at normalized box ``view``, the
    letters of every text element overlapping it."""
    out = np.zeros((grid * grid, len(CHARSET)), np.uint8)
    vw, vh = max(1e-9, view[2] - view[0]), max(1e-9, view[3] - view[1])
    for label, box in texts:
        b = box_to_norm(box, w, h)
        in_view = ((b[0] - view[0]) * NORM / vw, (b[1] - view[1]) * NORM / vh,
                   (b[2] - view[0]) * NORM / vw, (b[3] - view[1]) * NORM / vh)
        cells = cells_for_box(in_view, grid)
        if cells:
            out[cells] |= label_chars(label)
    return out


def _u8(view: np.ndarray) -> np.ndarray:
    return np.rint(view[0] * 255.0).astype(np.uint8)


def focus_tokens(grammar: ActionGrammar, box_n: tuple[float, float, float, float]) -> list[int]:
    v = grammar.v
    b = [v.to_bin(int(max(0, min(NORM, round(c))))) for c in box_n]
    b[2], b[3] = max(b[2], b[0]), max(b[3], b[1])
    return [v.focus_id] + [v.bin_id(i) for i in b] + [v.end_id]


def point_tokens(grammar: ActionGrammar, kind: str, nx: float, ny: float) -> list[int]:
    x, y = int(max(0, min(NORM, round(nx)))), int(max(0, min(NORM, round(ny))))
    return grammar.encode(Action(type=kind, x=x, y=y))


def focus_box_for(box_n, rng: random.Random | None) -> tuple[float, float, float, float]:
    """The FOCUS label: the target box with a margin (random in training)."""
    m = rng.uniform(0.1, 0.6) if rng is not None else 0.3
    bw, bh = box_n[2] - box_n[0], box_n[3] - box_n[1]
    return (box_n[0] - m * bw, box_n[1] - m * bh, box_n[2] + m * bw, box_n[3] + m * bh)


def make_samples(frame: np.ndarray, instruction: str, action: Action, box_px, *, grammar: ActionGrammar,
                 image_size: int, grid: int, rng: random.Random, cur: dict, stages: tuple[str, ...],
                 meta: dict | None = None, texts: list[tuple[str, tuple]] | None = None,
                 after: tuple[int, int] | None = None) -> list[Sample]:
    """Samples of one labelled state. ``action`` is full-frame; ``box_px`` the target's pixel box (clicks);
    ``texts`` the (label, pixel box) of what is written on screen (``readable``), for ``cell_chars``;
    ``after``: the full-frame point of the last action when it was a click (``last_click``)."""
    h, w = frame.shape[:2]

    def reading(*views: tuple) -> np.ndarray | None:
        return None if texts is None else np.stack([cell_chars(texts, v, w, h, grid) for v in views])

    full = preprocess(frame, image_size)
    out = []
    is_point = action.type in POINT_KINDS
    box_n = None
    if is_point:
        if box_px is None:  # a bundle teacher gives a point only: a small box around it
            px, py = to_pixels(action.x, action.y, w, h)
            r = max(4, min(w, h) // 100)
            box_px = (px - r, py - r, px + r + 1, py + r + 1)
        box_n = box_to_norm(box_px, w, h)
    for stage in stages:
        m = {**(meta or {}), "stage": stage, "width": w, "height": h, "action": action.type}
        if stage == "global":
            if is_point:
                fb = focus_box_for(box_n, rng)
                s = Sample(_u8(full)[None], instruction, focus_tokens(grammar, fb), 0, cells_for_box(box_n, grid),
                           meta={**m, "box_px": list(box_px), "label": "focus"})
            else:
                s = Sample(_u8(full)[None], instruction, grammar.encode(action), -1, [],
                           meta={**m, "label": action.type})
            s.cell_chars = reading((0, 0, NORM, NORM))
            out.append(s)
            continue
        # crop stage: [full, crop]
        if cur.get("frame_crop", 0) > rng.random():
            side = min(w, h) * rng.uniform(0.2, 0.5)
        else:
            side = image_size * rng.uniform(*cur["crop_side"])
        if after is not None and (not is_point or rng.random() < AFTER_CLICK_CROP):
            # the runtime keeps its crop where it last clicked: a focused field to type into, a
            # checkbox just ticked with Submit elsewhere (then the answer is a new FOCUS)
            crop = crop_around(*to_pixels(after[0], after[1], w, h), side, w, h, rng)
        elif is_point:
            cx_px, cy_px = (box_px[0] + box_px[2] - 1) / 2, (box_px[1] + box_px[3] - 1) / 2
            crop = crop_around(cx_px, cy_px, side, w, h, rng, contain=rng.random() < 0.88)
        else:
            crop = crop_around(w / 2, h / 2, side, w, h, rng, contain=False)
        if is_point:
            cx_px, cy_px = (box_px[0] + box_px[2] - 1) / 2, (box_px[1] + box_px[3] - 1) / 2
            nx, ny = to_normalized(cx_px, cy_px, w, h)
            inside = crop[0] <= nx <= crop[2] and crop[1] <= ny <= crop[3] and _box_in_crop(box_n, crop)
        else:
            inside = False
        views = np.stack([_u8(full), _u8(crop_view(frame, crop, image_size))])
        m["crop"] = list(crop)
        if is_point and inside:
            tx, ty = frame_to_crop(action.x, action.y, crop)
            cb = (*frame_to_crop(box_n[0], box_n[1], crop), *frame_to_crop(box_n[2], box_n[3], crop))
            s = Sample(views, instruction, point_tokens(grammar, action.type, tx, ty), 1,
                       cells_for_box(cb, grid), meta={**m, "box_px": list(box_px), "label": "point"})
        elif is_point:
            s = Sample(views, instruction, focus_tokens(grammar, focus_box_for(box_n, rng)), 0,
                       cells_for_box(box_n, grid), meta={**m, "box_px": list(box_px), "label": "focus"})
        else:
            s = Sample(views, instruction, grammar.encode(action), -1, [], meta={**m, "label": action.type})
        s.cell_chars = reading((0, 0, NORM, NORM), crop)
        out.append(s)
    return out


def _box_in_crop(box_n, crop) -> bool:
    """The target's centre is in the crop and at least half of the box is."""
    ix = max(0.0, min(box_n[2], crop[2]) - max(box_n[0], crop[0]))
    iy = max(0.0, min(box_n[3], crop[3]) - max(box_n[1], crop[1]))
    area = max(1e-9, (box_n[2] - box_n[0]) * (box_n[3] - box_n[1]))
    return ix * iy / area >= 0.5


def paraphrase(instruction: str, rng: random.Random) -> str:
    s = rng.choice(_PREFIX) + instruction + rng.choice(_SUFFIX)
    return s.upper() if rng.random() < 0.03 else s


# ----------------------------------------------------------------------------- the stream
class Stream:
    """Sample ``i`` of (seed, split) is deterministic; ``teacher(world, frame) -> (Action | None, box)``."""

    def __init__(self, vocab: ActionVocab, image_size: int, grid: int, seed: int = 0, split: str = "train",
                 curriculum: Curriculum | None = None, teacher: Callable | None = None,
                 samples_per_state: int = 2):
        self.vocab, self.grammar = vocab, ActionGrammar(vocab)
        self.image_size, self.grid, self.seed, self.split = image_size, grid, seed, split
        self.curriculum = curriculum or Curriculum()
        self.teacher = teacher
        self.samples_per_state = samples_per_state

    def label(self, world: SimWorld, frame: np.ndarray):
        if self.teacher is not None:
            return self.teacher(world, frame)
        return oracle_action(world, self.vocab)

    def state(self, i: int, seen: int | None = None) -> list[Sample]:
        """All samples of state ``i`` (``seen``: samples seen so far, for the curriculum; default i)."""
        rng = random.Random(f"edge-vla-train:{self.seed}:{self.split}:{i}")
        cur = self.curriculum.at(i * self.samples_per_state if seen is None else seen)
        spec = world_spec(rng, self.split, cur["point_kinds"])
        world = SimWorld(**spec)
        if spec["task"] == "fill_and_submit" and rng.random() < TYPING_STATES:
            hist = history_to_typing(world, rng, self.vocab)
        else:
            hist = random_history(world, rng, self.vocab, cur)
        if world.success and len(hist) > 1 and rng.random() >= DONE_KEEP:
            hist = hist[:-1]
            world = replay(spec, hist)
        frame = world.render()
        if rng.random() < cur["jpeg"]:
            frame = compress(frame, rng.randint(35, 90))
        action, box = self.label(world, frame)
        if action is None:
            action, box = Action(type="wait"), None
        instr = paraphrase(world.instruction, rng) if self.split == "train" else world.instruction
        stages = tuple("crop" if rng.random() < cur["crop_stage"] else "global"
                       for _ in range(self.samples_per_state))
        meta = {"index": i, "spec": spec, "history": hist, "theme": spec["theme"], "kind": spec["task"]}
        return make_samples(frame, instr, action, box, grammar=self.grammar, image_size=self.image_size,
                            grid=self.grid, rng=rng, cur=cur, stages=stages, meta=meta,
                            texts=readable(world.elements), after=last_click(hist))


def state_samples(args) -> list[Sample]:
    """Picklable entry for worker pools: ``(stream, i, seen)``."""
    stream, i, seen = args
    return stream.state(i, seen)
