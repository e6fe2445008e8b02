"""The element layer of one stream: what is on the screen (text lines, boxes, checkboxes, icons, panels),
with ids that stay put across frames, re-read only where the picture changed.

A frame that did not change costs one tile diff; a local change re-detects the changed area and
recognises only line crops it has not seen (a content-keyed cache); a new screen is read whole.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .shapes import Shape, find_shapes
from .text import TextReader

TILE = 32  # px: the unit of change
TILE_DIFF = 6.0  # mean absolute grey difference for a tile to count as changed (video noise, a caret's edge)
GROW = 24  # px around a changed area: a line whose end changed is re-read whole
WHOLE_SCREEN = 0.45  # a larger changed share re-reads the whole frame (cheaper than many regions)
CACHE_LINES = 2048
LIVE_FRAMES, LIVE_CHANGES, LIVE_TILES, LIVE_REFRESH_S = 6, 5, 6, 2.0
KINDS = ("text", "box", "checkbox", "icon", "panel")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class UIElement:
    id: int  # stable while the element stays on screen
    kind: str  # one of KINDS
    box: Box  # frame pixels, exclusive end
    text: str = ""
    confidence: float = 1.0
    checked: bool | None = None

    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2] - 1) / 2, (self.box[1] + self.box[3] - 1) / 2


@dataclass(frozen=True)
class ElementLayer:
    elements: tuple[UIElement, ...]
    width: int
    height: int
    t_read: float  # time.monotonic() of the frame this layer was read from
    stats: dict = field(default_factory=dict)  # what the last update did: regions, lines recognised, ms

    def age_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.t_read

    def describe(self) -> list[dict]:
        return [{"id": e.id, "kind": e.kind, "box": list(e.box), **({"text": e.text} if e.text else {}),
                 **({"checked": e.checked} if e.checked is not None else {})} for e in self.elements]


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Perceiver:
    """One stream's element layer, updated frame by frame. Not thread-safe: one caller at a time."""

    def __init__(self, reader: TextReader):
        self.reader = reader
        self.layer: ElementLayer | None = None
        self._grey: np.ndarray | None = None
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._image: np.ndarray | None = None  # the last frame read (a reference: frames are not mutated)
        self._recent: deque[np.ndarray] = deque()  # changed tiles of the last reads
        self._live_read = -1e9
        self._next_id = 1

    def reset(self) -> None:
        self.layer, self._grey, self._image = None, None, None

    def perceive(self, image: np.ndarray, t: float | None = None) -> ElementLayer:
        t = time.monotonic() if t is None else t
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        grey = _tile_grey(image)
        old = self.layer
        if old is not None and (old.width, old.height) != (w, h):
            old = None  # another frame size: nothing of the old layer is where it was
        if old is None or self._grey is None or self._grey.shape != grey.shape:
            regions: list[Box] = [(0, 0, w, h)]
            self._recent.clear()
        else:
            regions = _regions(self._not_live(_change_mask(self._grey, grey), t), w, h)
        self._grey = grey
        previous, self._image = self._image, image
        if old is not None and not regions:
            self.layer = ElementLayer(old.elements, w, h, t, {"regions": 0, "recognised": 0,
                                                               "ms": (time.perf_counter() - t0) * 1e3})
            return self.layer
        # a region cutting through a remembered line grows to hold all of it, so the line is read whole
        regions = [_grow_over(r, old.elements if old else (), w, h) for r in regions]
        kept = [] if old is None else [e for e in old.elements if not any(overlaps(e.box, r) for r in regions)]
        lines: list[Box] = []
        shapes: list[Shape] = []
        for r in regions:
            lines += self.reader.detect(image, r)
            shapes += find_shapes(image, r)
        # a line whose pixels did not change keeps what was read (detection boxes wobble by a pixel
        # between a region and the whole frame, and the cache is keyed by the exact crop)
        same = [self._unchanged_line(previous, image, b) for b in lines]
        kept = list({e.id: e for e in kept + [e for e in same if e is not None]}.values())
        todo = [b for b, e in zip(lines, same) if e is None]
        texts, recognised = self._recognise(image, todo)
        fresh = [("text", b, tx, c, None) for b, (tx, c) in zip(todo, texts) if tx]
        fresh += [(s.kind, s.box, "", 1.0, s.checked) for s in shapes]
        elements = kept + self._assign_ids(fresh, old.elements if old else ())
        elements.sort(key=lambda e: (e.box[1], e.box[0]))
        self.layer = ElementLayer(tuple(elements), w, h, t, {"regions": len(regions), "recognised": recognised,
                                                             "ms": (time.perf_counter() - t0) * 1e3})
        return self.layer

    def _not_live(self, changed: np.ndarray, t: float) -> np.ndarray:
        """``changed`` less live content (a ticking chart, a video): a block of at least ``LIVE_TILES``
        tiles that changed in ``LIVE_CHANGES`` of the last ``LIVE_FRAMES`` reads is re-read only every
        ``LIVE_REFRESH_S``. A blinking caret or a field being typed into is smaller: read at once."""
        self._recent.append(changed)
        if len(self._recent) > LIVE_FRAMES:
            self._recent.popleft()
        hot = sum(m.astype(np.int32) for m in self._recent) >= LIVE_CHANGES
        labels, n = ndimage.label(hot)
        if not n or changed.mean() > WHOLE_SCREEN:
            return changed
        sizes = ndimage.sum_labels(hot, labels, index=np.arange(1, n + 1))
        live = np.isin(labels, 1 + np.flatnonzero(sizes >= LIVE_TILES))
        if not live.any() or t - self._live_read >= LIVE_REFRESH_S:
            self._live_read = t
            return changed
        return changed & ~ndimage.binary_dilation(live)

    def _unchanged_line(self, prev: np.ndarray | None, image: np.ndarray, box: Box) -> UIElement | None:
        old = self.layer
        if old is None or prev is None or prev.shape != image.shape:
            return None
        for e in old.elements:
            if e.kind == "text" and iou(e.box, box) > 0.5:
                x0, y0, x1, y1 = e.box
                return e if np.array_equal(prev[y0:y1, x0:x1], image[y0:y1, x0:x1]) else None
        return None

    def _recognise(self, image: np.ndarray, boxes: list[Box]) -> tuple[list[tuple[str, float]], int]:
        crops = [np.ascontiguousarray(image[b[1]:b[3], b[0]:b[2]]) for b in boxes]
        keys = [hashlib.blake2b(c.tobytes(), digest_size=16, person=bytes(str(c.shape), "ascii")[:16]).digest()
                for c in crops]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        for i, res in zip(todo, self.reader.recognize([crops[i] for i in todo])):
            self._cache[keys[i]] = res
        out = [self._cache[k] for k in keys]
        for k in keys:  # least recently used first out
            self._cache.move_to_end(k)
        while len(self._cache) > CACHE_LINES:
            self._cache.popitem(last=False)
        return out, len(todo)

    def _assign_ids(self, fresh: list[tuple], previous: tuple[UIElement, ...]) -> list[UIElement]:
        out = []
        taken: set[int] = set()
        for kind, box, text, conf, checked in fresh:
            match = None
            for e in previous:
                if e.id not in taken and e.kind == kind and e.text == text and iou(e.box, box) > 0.5:
                    match = e.id
                    break
            if match is None:
                match, self._next_id = self._next_id, self._next_id + 1
            taken.add(match)
            out.append(UIElement(match, kind, tuple(int(v) for v in box), text, float(conf), checked))
        return out


def _tile_grey(image: np.ndarray) -> np.ndarray:
    """Green-channel means of 8x8 px sub-blocks (4x4 a tile): cheap at 4K, and a small change (a caret,
    a tick) still moves a sub-block."""
    h, w = image.shape[:2]
    th, tw = h // TILE, w // TILE
    if not (th and tw):  # too small to tile: one tile of 4x4 samples, any change re-reads it whole
        return image[np.ix_(np.linspace(0, h - 1, 4).astype(int), np.linspace(0, w - 1, 4).astype(int))][..., 1] \
            .astype(np.float32)
    step = 2 if max(h, w) > 2000 else 1  # every other pixel at 4K, where a caret is 2-3 px wide
    g = image[: th * TILE: step, : tw * TILE: step, 1]
    s = TILE // 4 // step
    return g.reshape(th * 4, s, tw * 4, s).mean(axis=(1, 3), dtype=np.float32)


def _change_mask(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Changed tiles: a tile changed when any of its sub-blocks did."""
    diff = np.abs(after - before)
    return diff.reshape(diff.shape[0] // 4, 4, diff.shape[1] // 4, 4).max(axis=(1, 3)) > TILE_DIFF


def _regions(changed: np.ndarray, w: int, h: int) -> list[Box]:
    if not changed.any():
        return []
    if changed.mean() > WHOLE_SCREEN:
        return [(0, 0, w, h)]
    labels, _ = ndimage.label(ndimage.binary_dilation(changed))
    regions = []
    for ys, xs in ndimage.find_objects(labels):
        regions.append((max(0, xs.start * TILE - GROW), max(0, ys.start * TILE - GROW),
                        min(w, xs.stop * TILE + GROW), min(h, ys.stop * TILE + GROW)))
    return regions


def _grow_over(r: Box, elements, w: int, h: int) -> Box:
    x0, y0, x1, y1 = r
    for e in elements:
        if e.kind == "text" and overlaps(e.box, (x0, y0, x1, y1)):
            x0, y0 = min(x0, e.box[0]), min(y0, e.box[1])
            x1, y1 = max(x1, e.box[2]), max(y1, e.box[3])
    return max(0, x0 - 4), max(0, y0 - 4), min(w, x1 + 4), min(h, y1 + 4)
