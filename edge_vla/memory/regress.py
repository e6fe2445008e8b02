"""Visual regression against a golden run: align, compare, localise.

Alignment: each live frame is matched to a golden frame by frame-vector
similarity within a window that only moves forward in time (a live run that is
slower or faster than the golden one stays aligned). Among the best few
candidates the one with the fewest changed pixels wins, which absorbs blinking
carets, animation phase and small timing shifts.

Comparison: the live frame is scaled to the golden reference thumbnail (lossless
PNG, ``memory.golden_width`` wide) and both are box-blurred 3x3 (compression
noise is mostly high-frequency). A pixel changed when its largest channel
difference exceeds ``diff_threshold``, unless the golden run itself changes
there without any action (the volatility mask: clocks, live charts, carets).
Changed pixels are grouped in blocks; each connected group of blocks with
enough changed pixels is one change, reported as the bounding box of its
pixels in 0..1000 frame coordinates, with the embedding grid tiles it touches.
A live run reports a regression when changes persist for ``persist`` frames.

Reading: when the golden run stored its text lines and the regressor has a reader, the live
frame's lines are read too (incrementally) and a line that says something else is a change,
boxed by its line and carrying both texts (``memory.textdiff``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .embed import Embedding, GridEmbedder, tile_distances
from .store import MemoryStore, MemoryStoreError
from .textdiff import Line, TextChange, text_changes, text_lines


@dataclass(frozen=True)
class Params:
    diff_threshold: float = 40.0  # 0..255, on the blurred images
    block: int = 8  # pixels at reference scale
    block_min_px: int = 4  # changed pixels that make a block count
    min_component_px: int = 20  # smaller groups are noise
    merge_blocks: int = 1  # blocks this close join one change
    volatile_window_s: float = 3.0
    volatile_threshold: float = 16.0  # lower than diff_threshold: whatever moves at all in the golden run
    same_screen_sim: float = 0.95
    volatile_dilate: int = 2  # px
    volatile_line: float = 0.06  # a changing text line is volatile this far sideways (fraction of width)
    candidates: int = 3
    behind: int = 2
    ahead: int = 10
    persist: int = 2


@dataclass
class Change:
    box: tuple[int, int, int, int]  # 0..1000 frame coordinates
    pixels: int
    tiles: list[int]
    tile_boxes: list[tuple[int, int, int, int]]
    score: float
    text: list[TextChange] = field(default_factory=list)  # lines here that read differently

    def as_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "pixels": self.pixels, "tiles": self.tiles,
                "tile_boxes": [list(b) for b in self.tile_boxes], "score": round(self.score, 3),
                **({"text": [t.as_dict() for t in self.text]} if self.text else {})}


@dataclass
class StepReport:
    step: int  # index of the aligned golden frame
    golden_frame_id: int
    similarity: float
    changes: list[Change]
    regression: bool = False  # changes that persisted (live mode)
    action: dict | None = None  # what the golden run did on that frame

    def as_event(self) -> dict[str, Any]:
        return {"step": self.step, "golden_frame_id": self.golden_frame_id,
                "similarity": round(self.similarity, 4), "changes": [c.as_dict() for c in self.changes]}


@dataclass
class RefFrame:
    frame_id: int
    ts: float
    vector: np.ndarray
    tiles: np.ndarray
    thumb: np.ndarray  # H x W x 3 uint8 at reference scale
    actions: list[dict] = field(default_factory=list)
    blurred: np.ndarray | None = None
    volatile: np.ndarray | None = None
    volatile_boxes: list | None = None
    text: list[Line] | None = None  # read at record time; None: the run was recorded without reading


def _box3(a: np.ndarray) -> np.ndarray:
    a = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    a = a[:, :-2] + a[:, 1:-1] + a[:, 2:]
    a = a[:, :, :-2] + a[:, :, 1:-1] + a[:, :, 2:]
    a *= 1 / 9
    return a


_YCC = np.array([[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]], np.float32)


def blur3(img: np.ndarray) -> np.ndarray:
    """Channel-first (3, H, W) float32 luma + chroma, box-blurred 3x3; chroma blurred once more,
    because codecs keep colour at half resolution (thin coloured lines lose saturation)."""
    a = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    ycc = np.tensordot(_YCC, a, axes=1)
    out = _box3(ycc)
    out[1:] = _box3(out[1:])
    return out


def maxdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest per-channel absolute difference of two channel-first images."""
    d = np.abs(a[0] - b[0])
    np.maximum(d, np.abs(a[1] - b[1]), out=d)
    np.maximum(d, np.abs(a[2] - b[2]), out=d)
    return d


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    out = mask.copy()
    p = np.pad(mask, r)
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= p[r + dy:r + dy + h, r + dx:r + dx + w]
    return out


def _grow(mask: np.ndarray, r: int, axis: int) -> np.ndarray:
    if r <= 0:
        return mask
    c = np.cumsum(np.pad(mask, [(r + 1, r) if a == axis else (0, 0) for a in range(2)]).astype(np.int32), axis=axis)
    n = mask.shape[axis]
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) > 0


def dilate_rect(mask: np.ndarray, rx: int, ry: int) -> np.ndarray:
    """Every pixel within rx columns and ry rows of a set pixel (a separable box max)."""
    return _grow(_grow(mask, rx, 1), ry, 0)


def fill_boxes(mask: np.ndarray, block: int, boxes: list | None = None) -> np.ndarray:
    """Each connected volatile region (at block resolution) replaced by its bounding box
    (appended to ``boxes`` as pixel (x0, y0, x1, y1) when given)."""
    h, w = mask.shape
    bh, bw = -(-h // block), -(-w // block)
    padded = np.zeros((bh * block, bw * block), bool)
    padded[:h, :w] = mask
    on = padded.reshape(bh, block, bw, block).any(axis=(1, 3))
    out = mask.copy()
    seen = np.zeros_like(on)
    for y0, x0 in zip(*np.nonzero(on)):
        if seen[y0, x0]:
            continue
        stack, ys, xs = [(y0, x0)], [], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for yy in range(max(0, y - 1), min(bh, y + 2)):
                for xx in range(max(0, x - 1), min(bw, x + 2)):
                    if on[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        out[min(ys) * block:(max(ys) + 1) * block, min(xs) * block:(max(xs) + 1) * block] = True
        if boxes is not None:
            boxes.append((min(xs) * block, min(ys) * block, min(w, (max(xs) + 1) * block), min(h, (max(ys) + 1) * block)))
    return out


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to ``size`` (w, h) with area averaging."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.BOX, reducing_gap=2.0))


class GoldenRun:
    def __init__(self, name: str, frames: list[RefFrame], params: Params | None = None, info: dict | None = None):
        if not frames:
            raise MemoryStoreError(f"golden run {name!r} has no frames")
        self.name = name
        self.frames = frames
        self.params = params or Params()
        self.info = info or {}
        self.size = (frames[0].thumb.shape[1], frames[0].thumb.shape[0])
        self._vectors = np.stack([f.vector for f in frames])
        self._action_ts = np.array(sorted(a.get("ts", f.ts) for f in frames for a in f.actions), np.float64)
        self._live_lines: list | None = None

    @classmethod
    def load(cls, store: MemoryStore, name: str, params: Params | None = None) -> "GoldenRun":
        info = store.run_info(name)
        frames = []
        for h in store.run_frames(name):
            if h.thumb is None:
                raise MemoryStoreError(f"golden run {name!r}: frame {h.frame_id} has no reference thumbnail")
            acts = [dict(a, ts=a.get("published_ts", h.ts)) for a in h.actions]
            frames.append(RefFrame(h.frame_id, h.ts, store.frame_vector(h.frame_id), store.frame_tiles(h.frame_id),
                                   store.thumb_image(h.thumb), acts, text=store.frame_text(h.frame_id)))
        return cls(name, frames, params, info)

    def blurred(self, i: int) -> np.ndarray:
        f = self.frames[i]
        if f.blurred is None:
            f.blurred = blur3(f.thumb)
        return f.blurred

    def volatile(self, i: int) -> np.ndarray:
        """Pixels that change in the golden run near frame ``i`` without any action in between."""
        f = self.frames[i]
        if f.volatile is None:
            p = self.params
            mask = np.zeros(f.thumb.shape[:2], bool)
            for j, g in enumerate(self.frames):
                if j == i or abs(g.ts - f.ts) > p.volatile_window_s:
                    continue
                lo, hi = sorted((f.ts, g.ts))
                if np.any((self._action_ts > lo) & (self._action_ts <= hi)):
                    continue  # an action happened in between: its effect is not noise
                if float(f.vector @ g.vector) < p.same_screen_sim:
                    continue
                mask |= maxdiff(self.blurred(i), self.blurred(j)) > p.volatile_threshold
            # live regions (a chart's plot) as boxes of the raw changes: what absorb_volatile grows into
            f.volatile_boxes = []
            regions = fill_boxes(dilate(mask, p.volatile_dilate), p.block, f.volatile_boxes)
            # text that changes (a clock) is volatile along its whole line
            f.volatile = regions | dilate_rect(mask, int(p.volatile_line * mask.shape[1]), p.volatile_dilate)
        return f.volatile

    def live_lines(self) -> list[tuple[int, int, int, int]]:
        """Boxes (0..1000) where the golden run's own text changes between two frames with no
        action in between (a clock, a counter): what a line says there is not the screen's."""
        if self._live_lines is None:
            self._live_lines = []
            for a, b in zip(self.frames, self.frames[1:]):
                # an action stamped with frame a's time shows from frame b on
                if a.text is None or b.text is None or np.any((self._action_ts >= a.ts) & (self._action_ts < b.ts)):
                    continue
                self._live_lines += [c.box for c in text_changes(a.text, b.text)]
        return self._live_lines

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        return self._vectors @ vector.astype(np.float32)


def changed_mask(golden: GoldenRun, i: int, live_blur: np.ndarray) -> np.ndarray:
    p = golden.params
    diff = maxdiff(live_blur, golden.blurred(i))
    return (diff > p.diff_threshold) & ~golden.volatile(i)


def tile_boxes(tiles: list[int], grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The 0..1000 boxes of embedding grid tiles (row-major, ``grid`` = (cols, rows))."""
    cols, rows = grid
    return [(t % cols * 1000 // cols, t // cols * 1000 // rows, (t % cols + 1) * 1000 // cols,
             (t // cols + 1) * 1000 // rows) for t in tiles]


def components(mask: np.ndarray, params: Params, grid: tuple[int, int], tiles_delta: np.ndarray | None = None
               ) -> list[Change]:
    b = params.block
    h, w = mask.shape
    bh, bw = -(-h // b), -(-w // b)
    padded = np.zeros((bh * b, bw * b), bool)
    padded[:h, :w] = mask
    counts = padded.reshape(bh, b, bw, b).sum(axis=(1, 3))
    on = counts >= params.block_min_px
    if not on.any():
        return []
    seen = np.zeros_like(on)
    r = params.merge_blocks
    out = []
    cols, rows = grid
    for y0, x0 in zip(*np.nonzero(on)):
        if seen[y0, x0]:
            continue
        stack, members = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            members.append((y, x))
            for yy in range(max(0, y - r - 1), min(bh, y + r + 2)):
                for xx in range(max(0, x - r - 1), min(bw, x + r + 2)):
                    if on[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        ys = np.array([m[0] for m in members])
        xs = np.array([m[1] for m in members])
        sub = padded[ys.min() * b:(ys.max() + 1) * b, xs.min() * b:(xs.max() + 1) * b]
        keep = np.zeros_like(sub)
        for y, x in members:
            yy, xx = (y - ys.min()) * b, (x - xs.min()) * b
            keep[yy:yy + b, xx:xx + b] = sub[yy:yy + b, xx:xx + b]
        n = int(keep.sum())
        if n < params.min_component_px:
            continue
        py, px = np.nonzero(keep)
        X0, Y0 = xs.min() * b + px.min(), ys.min() * b + py.min()
        X1, Y1 = xs.min() * b + px.max() + 1, ys.min() * b + py.max() + 1
        box = (int(X0 * 1000 / w), int(Y0 * 1000 / h), int(np.ceil(X1 * 1000 / w)), int(np.ceil(Y1 * 1000 / h)))
        ty_s = sorted({int(Y0), int(Y1) - 1, *range(int(Y0), int(Y1), max(1, h // rows))})
        tx_s = sorted({int(X0), int(X1) - 1, *range(int(X0), int(X1), max(1, w // cols))})
        tiles = sorted({(ty * rows // h) * cols + (tx * cols // w) for ty in ty_s for tx in tx_s})
        score = float(tiles_delta[tiles].max()) if tiles_delta is not None and tiles else float(n)
        out.append(Change(box, n, tiles, tile_boxes(tiles, grid), score))
    return out


def absorb_volatile(changes: list[Change], vboxes: list, size: tuple[int, int], touch: int = 3) -> list[Change]:
    """A change at the edge of a live region (a chart's plot) means the region itself moved or
    resized: report the change together with that region."""
    if not vboxes or not changes:
        return changes
    w, h = size
    for c in changes:
        x0, y0, x1, y1 = c.box[0] * w / 1000, c.box[1] * h / 1000, c.box[2] * w / 1000, c.box[3] * h / 1000
        for vx0, vy0, vx1, vy1 in vboxes:
            if (vx1 - vx0) * (vy1 - vy0) < 0.01 * w * h:
                continue  # small live things (a clock, a caret) do not move charts
            if x0 - touch <= vx1 and vx0 <= x1 + touch and y0 - touch <= vy1 and vy0 <= y1 + touch:
                x0, y0, x1, y1 = min(x0, vx0), min(y0, vy0), max(x1, vx1), max(y1, vy1)
        c.box = (int(x0 * 1000 / w), int(y0 * 1000 / h), int(np.ceil(x1 * 1000 / w)), int(np.ceil(y1 * 1000 / h)))
    return changes


def tiles_of(box: tuple[int, int, int, int], grid: tuple[int, int]) -> list[int]:
    """Embedding grid tiles (row-major) that a 0..1000 box touches."""
    cols, rows = grid
    c0, c1 = box[0] * cols // 1000, min(cols - 1, (box[2] - 1) * cols // 1000)
    r0, r1 = box[1] * rows // 1000, min(rows - 1, (box[3] - 1) * rows // 1000)
    return [r * cols + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def _touch(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def with_text(changes: list[Change], texts: list[TextChange], grid: tuple[int, int]) -> list[Change]:
    """Text changes joined to the pixel changes they touch; a line that now says other words and
    that the pixels missed (same ink, other letters) is a change of its own. A line that is only
    gone counts where the pixels agree: the reader alone may miss a line in a noisy frame."""
    for t in texts:
        hit = [c for c in changes if _touch(c.box, t.box)]
        for c in hit:
            c.text.append(t)
        if not hit and t.live:
            tiles = tiles_of(t.box, grid)
            changes.append(Change(t.box, 0, tiles, tile_boxes(tiles, grid), 1.0, [t]))
    return changes


class LiveRegressor:
    """Aligns a stream of live frames to a golden run and reports changes per frame; with a
    ``reader`` (a ``perception.Perceiver``) also compares what the lines say."""

    def __init__(self, golden: GoldenRun, embedder=None, reader=None):
        self.golden = golden
        self.reader = reader
        self.embedder = embedder or GridEmbedder()
        self.pointer: int | None = None
        self._offset: float | None = None  # golden ts - live ts at the last alignment
        self._streak = 0

    def align(self, vector: np.ndarray, live_blur: np.ndarray, ts: float | None = None
              ) -> tuple[int, float, np.ndarray]:
        p, g = self.golden.params, self.golden
        sims = g.similarities(vector)
        if self.pointer is None:
            lo, hi = 0, len(g.frames)
        else:
            lo, hi = max(0, self.pointer - p.behind), min(len(g.frames), self.pointer + p.ahead + 1)
        window = np.arange(lo, hi)
        best = window[np.argsort(-sims[lo:hi], kind="stable")[:p.candidates]]
        expected = None if ts is None or self._offset is None else ts + self._offset
        scored = []
        for i in best:
            m = changed_mask(g, int(i), live_blur)
            n = int(m.sum())
            lag = 0.0 if expected is None else abs(g.frames[int(i)].ts - expected)
            # pixel counts within noise of each other tie; then the frame nearest in time wins
            scored.append((n // max(1, p.min_component_px), lag, int(i), m))
        _, _, choice, mask = min(scored, key=lambda s: s[:3])
        if ts is not None:
            self._offset = g.frames[choice].ts - ts
        return choice, float(sims[choice]), mask

    def step(self, image: np.ndarray, embedding: Embedding | None = None, ts: float | None = None) -> StepReport:
        emb = embedding or self.embedder.embed(image)
        live_blur = blur3(fit(image, self.golden.size))
        i, sim, mask = self.align(emb.frame, live_blur, ts)
        self.pointer = i if self.pointer is None else max(self.pointer, i)
        ref = self.golden.frames[i]
        delta = tile_distances(emb.tiles, ref.tiles)
        changes = components(mask, self.golden.params, (emb.cols, emb.rows), delta)
        changes = absorb_volatile(changes, ref.volatile_boxes or [], self.golden.size)
        if self.reader is not None and ref.text is not None:
            changes = with_text(changes, self._read(image, ts, i), (emb.cols, emb.rows))
        self._streak = self._streak + 1 if changes else 0
        return StepReport(i, ref.frame_id, sim, changes, regression=self._streak >= self.golden.params.persist,
                          action=ref.actions[0] if ref.actions else None)

    def _read(self, image: np.ndarray, ts: float | None, i: int) -> list[TextChange]:
        """Golden frame i's lines against the live frame's, less the golden run's own live areas
        (pixels that change near frame i, lines whose text changes anywhere in the run)."""
        ref, g = self.golden.frames[i], self.golden
        vol = g.volatile(i)
        vh, vw = vol.shape

        live = g.live_lines()

        def steady(line: Line) -> bool:
            box = (x0, y0, x1, y1) = line[0]
            return not vol[y0 * vh // 1000:max(y0 * vh // 1000 + 1, y1 * vh // 1000),
                           x0 * vw // 1000:max(x0 * vw // 1000 + 1, x1 * vw // 1000)].any() \
                and not any(_touch(box, b) for b in live)

        layer = self.reader.perceive(image, ts)
        return text_changes([ln for ln in ref.text or [] if steady(ln)], text_lines(layer))


def regress_frames(golden: GoldenRun, images, embedder=None, reader=None) -> dict[str, Any]:
    """Offline: compare a sequence of images (a recorded run) with the golden run."""
    reg = LiveRegressor(golden, embedder, reader)
    steps = []
    for k, image in enumerate(images):
        r = reg.step(image)
        steps.append({"frame": k, "regression": r.regression, **r.as_event()})
    flagged = [s for s in steps if s["regression"]]
    return {"golden": golden.name, "frames": len(steps), "regressions": len(flagged),
            "first_regression": flagged[0] if flagged else None, "steps": steps}
