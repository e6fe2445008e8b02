"""Set-of-marks runtimes: the perceived elements are the choices, the model picks one and what to do.

Two families share perception and the mapping from a mark to a contract action:
- ``marks``: the trained student (``chooser.onnx``): instruction words + elements (text, box, kind,
  match with the instruction, a small crop) -> action type, a mark, a span of the instruction to type;
- ``textmatch``: the non-learned baseline: click the element whose text best matches the instruction.
The grammar is the element list: a click can only land on a mark that exists.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..actions import Action, Target, box_to_normalized, to_normalized, to_pixels
from ..config import ModelConfig
from ..perception.layer import KINDS, ElementLayer, Perceiver, UIElement
from ..perception.match import best_matches, locate, words
from ..perception.text import (DET_FILE, REC_FILE, WEIGHTS_PACKAGE, PerceptionWeightsError, TextReader, sha256,
                               weight_files)
from .avoid import is_dead, log_softmax
from .bundle import Bundle, BundleError
from .session import open_session

MAX_WORDS, MAX_ELEMENTS, MAX_CHARS = 24, 64, 16
# Real pages carry 100-200 elements (a sidebar, a table); the sim's screens under 64. The graph takes
# any number of marks; beyond MAX_MARKS the ones the instruction names least are left out.
MAX_MARKS = 192
# An unsure student's pick that is not a click on something named gives way to reading's click below
# this probability (see MarksRuntime). 0.9 kept all but 1-2 of 60 simulator tasks per seed and took
# the fresh real pages from 62 % to 75 %; 0.99 cost more tasks (57/60) for 2 more points.
DEFER_BELOW = 0.9
CROP_H, CROP_W = 12, 24
N_FEATS, N_GLOBAL = 24, 8
TYPES = ("click", "type", "key", "scroll_down", "scroll_up", "wait", "done")
LAST = ("none", "click", "type", "key", "scroll", "wait")  # the previous action, as the model sees it
SCROLL_DY = 400
MATCH_MIN = 0.8  # the baseline's bar for "this element says what the instruction names"
GRAPH = "chooser.onnx"
MAX_STREAMS = 16


def perception_spec(det_side: int = 1440) -> dict:
    """The manifest entry that pins the OCR weights: a bundle is evaluated with these exact files."""
    files = weight_files()
    return {"package": f"{WEIGHTS_PACKAGE.replace('_', '-')}==1.4.4", "det_side": det_side,
            "files": {"det": {"name": DET_FILE, "sha256": sha256(files["det"])},
                      "rec": {"name": REC_FILE, "sha256": sha256(files["rec"])}}}


# -- features (the trainer builds its samples with the same function) -------------------------------

def _bytes(text: str) -> np.ndarray:
    b = text.lower().encode("utf-8", "replace")[:MAX_CHARS]
    out = np.zeros(MAX_CHARS, np.int64)
    out[: len(b)] = np.frombuffer(b, np.uint8)
    return out


def _crop(image: np.ndarray, box: tuple) -> np.ndarray:
    x0, y0, x1, y1 = box
    c = image[y0:y1, x0:x1]
    # subsample first: a panel at 4K is millions of pixels and only 12x24 are kept
    sy, sx = max(1, c.shape[0] // (CROP_H * 4)), max(1, c.shape[1] // (CROP_W * 4))
    c = np.ascontiguousarray(c[::sy, ::sx])
    if c.size == 0:
        return np.zeros((3, CROP_H, CROP_W), np.float32)
    small = np.asarray(Image.fromarray(c).resize((CROP_W, CROP_H), Image.BILINEAR), np.float32) / 255
    return small.transpose(2, 0, 1)


def label_features(f: np.ndarray) -> np.ndarray:
    """For each element, how well its label matches the instruction, and where in it: the best
    match score (and span start) among the text lines just above it or just left of it on its row.
    Fields are named by a label beside them; the student should not have to learn that geometry.
    Works on the feature rows themselves (kind, box, match), so stored samples can be recomputed."""
    out = np.zeros((len(f), 2), np.float32)
    text = f[:, 0] > 0.5
    if not text.any():
        return out
    x0, y0, x1, y1 = f[:, 6], f[:, 7], f[:, 8], f[:, 9]
    h = np.maximum(y1 - y0, 1e-3)[:, None]  # the element's height (rows) sets how far a label may be
    above = ((y0[:, None] - y1[None]) >= -0.5 * h) & ((y0[:, None] - y1[None]) <= 2.0 * h) \
        & (x0[None] < x1[:, None]) & (x1[None] > x0[:, None])
    cy, tcy = (y0 + y1) / 2, (y0 + y1) / 2
    left = (np.abs(cy[:, None] - tcy[None]) < 0.5 * h) & (x1[None] <= x0[:, None] + 0.01) \
        & (x0[:, None] - x1[None] < 0.3)
    named = text & (f[:, 12] >= MATCH_MIN)  # a label that says what the instruction names
    near = (above | left) & named[None] & ~np.eye(len(f), dtype=bool)
    score = np.where(near, f[None, :, 12], 0.0)
    best = score.argmax(axis=1)
    out[:, 0] = score.max(axis=1)
    out[:, 1] = np.where(out[:, 0] > 0, f[best, 13], 0.0)
    return out


def featurize(layer: ElementLayer, image: np.ndarray, instruction: str, last: str = "none",
              last_point: tuple[int, int] | None = None, limit: int = MAX_MARKS
              ) -> tuple[dict[str, np.ndarray], list[UIElement]]:
    """The chooser's inputs for one frame, and the elements in the order of its mark outputs."""
    elements = list(layer.elements)
    matches = best_matches([e.text for e in elements], instruction)
    if len(elements) > limit:
        keep = sorted(sorted(range(len(elements)), key=lambda i: -matches[i][0])[:limit])
        elements, matches = [elements[i] for i in keep], [matches[i] for i in keep]
    n = max(1, len(elements))  # the graph takes any number of marks: no padding to pay for
    ws = words(instruction)[:MAX_WORDS]
    w, h = layer.width, layer.height
    word_bytes = np.zeros((1, MAX_WORDS, MAX_CHARS), np.int64)
    word_mask = np.zeros((1, MAX_WORDS), np.float32)
    for i, wd in enumerate(ws):
        word_bytes[0, i] = _bytes(wd)
        word_mask[0, i] = 1
    texts = np.zeros((1, n, MAX_CHARS), np.int64)
    feats = np.zeros((1, n, N_FEATS), np.float32)
    crops = np.zeros((1, n, 3, CROP_H, CROP_W), np.float32)
    mask = np.zeros((1, n), np.float32)
    panels = [e.box for e in elements if e.kind == "panel"]
    nw = max(1, len(ws))
    for i, (e, (score, start, span)) in enumerate(zip(elements, matches)):
        x0, y0, x1, y1 = e.box
        f = feats[0, i]
        f[KINDS.index(e.kind)] = 1
        f[5] = 0 if e.checked is None else (1 if e.checked else -1)
        f[6:10] = x0 / w, y0 / h, x1 / w, y1 / h
        f[10:12] = (x1 - x0) / w, (y1 - y0) / h
        f[12], f[13], f[14], f[15] = score, start / nw, span / 6, float(score >= 0.95)
        if last_point is not None:
            f[16] = float(x0 <= last_point[0] < x1 and y0 <= last_point[1] < y1)
        f[17] = float(any(p != e.box and p[0] <= x0 and p[1] <= y0 and x1 <= p[2] and y1 <= p[3] for p in panels))
        f[18] = e.confidence
        f[19] = min(1.0, len(e.text) / 30)
        f[20] = (y0 + y1) / 2 / h - 0.5  # centred positions: above or below the middle
        f[21] = (x0 + x1) / 2 / w - 0.5
        texts[0, i] = _bytes(e.text)
        crops[0, i] = _crop(image, e.box)
        mask[0, i] = 1
    feats[0, :, 22:24] = label_features(feats[0])
    g = np.zeros((1, N_GLOBAL), np.float32)
    g[0, LAST.index(last) if last in LAST else 0] = 1
    g[0, 6] = float(bool(panels))
    g[0, 7] = min(1.0, len(elements) / MAX_ELEMENTS)
    return {"words": word_bytes, "word_mask": word_mask, "texts": texts, "feats": feats, "crops": crops,
            "elem_mask": mask, "globals": g}, elements


def point_of(e: UIElement, layer: ElementLayer, instruction: str = "") -> tuple[int, int]:
    """The mark's centre; on a text line that holds what the instruction names as only part of
    it (a link at the end of a sentence), the centre of that part."""
    cx, cy = e.centre()
    part = locate(e.text, instruction) if e.kind == "text" and instruction else None
    if part is not None:
        cx = e.box[0] + (e.box[2] - e.box[0]) * (part[0] + part[1]) / 2
    return to_normalized(cx, cy, layer.width, layer.height)


def target_of(e: UIElement, layer: ElementLayer) -> Target:
    return Target(kind=e.kind, text=e.text or None, box=box_to_normalized(e.box, layer.width, layer.height))


def action_for(kind: str, e: UIElement | None, layer: ElementLayer, text: str | None = None,
               instruction: str = "") -> Action | None:
    """The contract action for a chosen type and mark; None when the type needs a mark and has none."""
    if kind in ("wait", "done"):
        return Action(type=kind)
    if kind == "key":
        return Action(type="key", key="ctrl+a")
    if e is None:
        return None
    x, y = point_of(e, layer, instruction)
    target = target_of(e, layer)
    if kind == "click":
        return Action(type="click", x=x, y=y, target=target)
    if kind == "type":
        # no point: a type with one clicks there first, and that click undoes a select-all
        # (ctrl+a) the student chose to replace what the field held
        return Action(type="type", text=text, target=target) if text else None
    return Action(type="scroll", x=x, y=y, dx=0, dy=SCROLL_DY if kind == "scroll_down" else -SCROLL_DY,
                  target=target)


@dataclass
class StreamState:
    """What a runtime remembers per stream: its element layer and the last action of the current task."""

    perceiver: Perceiver
    layer: ElementLayer | None = None
    instruction: str | None = None
    last: str = "none"
    last_point: tuple[int, int] | None = None
    scored: tuple | None = None  # (elements, (instruction, last, last_point), outputs, marks, named ids) of the last run


class MarksBase:
    """Perception per stream (one OCR session shared), the task memory, and the stage clock."""

    def __init__(self, bundle: Bundle, cfg: ModelConfig):
        m = bundle.manifest
        self.name = m.name
        spec = m.inputs.get("perception")
        if not spec or set(spec.get("files", {})) != {"det", "rec"}:
            raise BundleError(f"model bundle {bundle.path}: manifest inputs.perception must pin the det and rec "
                              "OCR weights by sha256")
        try:
            self.reader = TextReader(threads=cfg.intra_threads, det_side=int(spec.get("det_side", 1440)),
                                     hashes={k: v["sha256"] for k, v in spec["files"].items()})
        except PerceptionWeightsError as exc:
            raise BundleError(f"model bundle {bundle.path}: {exc}") from None
        self.streams: OrderedDict[str, StreamState] = OrderedDict()

    def state(self, stream: str = "default") -> StreamState:
        """The stream's state; WHIP peers come and go, so the least recently seen beyond
        ``MAX_STREAMS`` is forgotten (a layer holds a frame and a line cache)."""
        if stream not in self.streams:
            self.streams[stream] = StreamState(Perceiver(self.reader))
            while len(self.streams) > MAX_STREAMS:
                self.streams.popitem(last=False)
        self.streams.move_to_end(stream)
        return self.streams[stream]

    def reset(self, stream: str = "default") -> None:
        """A new task: forget the previous action (the layer is kept: the screen is still what it was)."""
        st = self.state(stream)
        st.last, st.last_point, st.instruction = "none", None, None

    def infer(self, image: np.ndarray, instruction: str, avoid: Iterable = frozenset(),
              stream: str = "default", sent: Action | None = None,
              layer: ElementLayer | None = None) -> tuple[Action, dict[str, float]]:
        t0 = time.perf_counter()
        st = self.state(stream)
        if instruction != st.instruction:
            self.reset(stream)
            st.instruction = instruction
        st.layer = layer if layer is not None else st.perceiver.perceive(image)
        if sent is not None:  # the loop's word on what went out beats our record of what we decided
            self._remember(st, sent)
        t1 = time.perf_counter()
        action, stages = self.choose(image, st, instruction, frozenset(avoid))
        self._remember(st, action)
        return action, {"perceive": (t1 - t0) * 1e3, **stages}

    @staticmethod
    def _remember(st: StreamState, action: Action) -> None:
        if action.type != "wait" or st.last == "none":  # waiting keeps what was done before it
            st.last = action.type if action.type in LAST else "none"
        if action.x is not None and action.y is not None and action.type in ("click", "type"):
            st.last_point = to_pixels(action.x, action.y, st.layer.width, st.layer.height)

    def choose(self, image: np.ndarray, st: StreamState, instruction: str,
               avoid: frozenset) -> tuple[Action, dict[str, float]]:
        raise NotImplementedError


def read_choice(layer: ElementLayer, instruction: str, avoid: frozenset) -> Action | None:
    """Reading alone: a click on the text element that best matches a span of the instruction
    (at least MATCH_MIN); None when nothing on screen says what the instruction names."""
    texts = [e for e in layer.elements if e.kind == "text"]
    ranked = sorted(zip(best_matches([e.text for e in texts], instruction), texts),
                    key=lambda p: (-p[0][0], -p[0][2]))
    for (score, _, _), e in ranked:
        if score < MATCH_MIN:
            break
        a = action_for("click", e, layer, instruction=instruction)
        if a is not None and not is_dead(a, avoid):
            return a
    return None


class TextMatchRuntime(MarksBase):
    """The baseline: the text element that best matches a span of the instruction, clicked."""

    def choose(self, image, st, instruction, avoid):
        t0 = time.perf_counter()
        action = read_choice(st.layer, instruction, avoid) or Action(type="wait")
        return action, {"decode": (time.perf_counter() - t0) * 1e3}


class MarksRuntime(MarksBase):
    """The student: ``chooser.onnx`` scores action types and marks; the best live pair wins.

    Where the student is less sure of its pick than the bundle's ``inputs.defer_below``, the pick is
    not a click on something the instruction names, and reading names a target, reading's click is
    taken: on screens unlike its training ones the student is unsure and then wrong two times in
    three, while reading does not care what a page looks like."""

    def __init__(self, bundle: Bundle, cfg: ModelConfig):
        super().__init__(bundle, cfg)
        self.session = open_session(bundle.file(GRAPH), cfg)
        self.defer_below = float(bundle.manifest.inputs.get("defer_below", 0.0))
        self.decisions = self.deferred = 0  # how often reading overruled an unsure student

    def scores(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, inputs)))

    def choose(self, image, st, instruction, avoid):
        t0 = time.perf_counter()
        # a steady screen keeps its element tuple (the same object): its scores stand until the
        # screen, the instruction or the last action changes; only the decode (what is dead) is redone
        key = (instruction, st.last, st.last_point)
        if st.scored is None or st.scored[0] is not st.layer.elements or st.scored[1] != key:
            inputs, elements = featurize(st.layer, image, instruction, st.last, st.last_point)
            t1 = time.perf_counter()
            f = inputs["feats"][0]
            named = {e.id for e, own, label in zip(elements, f[:, 12], f[:, 22]) if max(own, label) >= MATCH_MIN}
            st.scored = (st.layer.elements, key, self.scores(inputs), elements, named)
        else:
            t1 = time.perf_counter()
        t2 = time.perf_counter()
        action, chosen, logp = decode(st.scored[2], st.scored[3], st.layer, instruction, avoid)
        self.decisions += 1
        # a click on what the instruction names (its text, or the field or box that text labels)
        # stands however unsure; anything else from an unsure student gives way to reading
        supported = action.type == "click" and chosen is not None and chosen.id in st.scored[4]
        if self.defer_below > 0 and logp < math.log(self.defer_below) and not supported:
            read = read_choice(st.layer, instruction, avoid)
            if read is not None:
                action = read
                self.deferred += 1
        t3 = time.perf_counter()
        return action, {"features": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}


def decode(out: dict[str, np.ndarray], elements: list[UIElement], layer: ElementLayer, instruction: str,
           avoid: frozenset) -> tuple[Action, UIElement | None, float]:
    """The most probable (type, mark) pair whose action is valid and not dead, and its log
    probability; ``wait`` (log probability -inf) if none is."""
    lt = log_softmax(out["type_logits"][0])
    n = len(elements)
    lm = log_softmax(out["mark_logits"][0, :n]) if n else np.zeros(0)
    ws = words(instruction)[:MAX_WORDS]
    text = None
    if ws:
        s = out["span_start"][0, : len(ws)]
        e = out["span_end"][0, : len(ws)]
        best = max(((s[i] + e[j], i, j) for i in range(len(ws)) for j in range(i, min(len(ws), i + 6))))
        text = " ".join(ws[best[1]: best[2] + 1])
    candidates: list[tuple[float, str, UIElement | None]] = []
    for ti, kind in enumerate(TYPES):
        if kind in ("wait", "done", "key"):
            candidates.append((lt[ti], kind, None))
        else:
            candidates += [(lt[ti] + lm[i], kind, elements[i]) for i in range(n)]
    for logp, kind, e in sorted(candidates, key=lambda c: -c[0]):
        a = action_for(kind, e, layer, text, instruction)
        if a is not None and not is_dead(a, avoid):
            return a, e, float(logp)
    return Action(type="wait"), None, -math.inf


def write_bundle(folder, name: str, family: str, files: tuple = (), provenance: dict | None = None) -> None:
    """A ``marks``/``textmatch`` bundle: the manifest pins the OCR weights by hash next to its own files."""
    from pathlib import Path

    from .bundle import Manifest, file_entry, write_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, Manifest(
        name=name, family=family, files={f: file_entry(folder / f) for f in files},
        inputs={"perception": perception_spec(), "max_words": MAX_WORDS, "max_elements": MAX_ELEMENTS,
                "max_chars": MAX_CHARS, "crop": [CROP_H, CROP_W], "feats": N_FEATS, "globals": N_GLOBAL,
                **({"defer_below": DEFER_BELOW} if family == "marks" else {})},
        tokenizer={"kind": "bytes", "per_word": MAX_CHARS, "lowercase": True},
        action_vocab={"kind": "marks", "types": list(TYPES), "scroll_dy": SCROLL_DY, "keys": ["ctrl+a"]},
        provenance=provenance or {}))
