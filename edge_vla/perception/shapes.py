"""Non-text screen elements from pixels: boxes (buttons, text fields), checkboxes, icons, panels.

Text is the OCR's (``perception.text``). Here, numpy and scipy only: flat fills bounded by a colour
step are controls and panels; small closed outlines are tick boxes and switches; X-shaped ink, closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

WORK_SIDE = 1280  # frames are pooled by a whole factor until the long side is about this
EDGE = 8  # largest channel step between neighbours inside one flat region (anti-aliasing, codecs)
SOLID = 0.85  # share of its box a region fills, holes filled: rectangles, rounded ones, not letters
ROUNDED = 0.78  # the same for a tick box, whose corners may be rounded off to a third of its side
CHORD = 0.72  # see _squarish: a rounded tick box's chord is over 0.8 of its side, a disc's 0.65
HOLLOW = 0.12  # share of a tick box's outline blob that is flat inside it, tick or not
# sizes below are working pixels (after pooling), where a UI is drawn at roughly 1 px per layout unit
CHECK_SIDE = (9, 40)
BOX_HEIGHT = (12, 90)
PANEL_MIN = (120, 90)  # width, height
PAGE = 0.8  # share of the frame a panel may cover
STRIPE_GAP = 4  # fills this close, one above the other, are split by a 1 px line only
ICON_SIDE = (5, 40)  # ink of a close cross, outline included


@dataclass(frozen=True)
class Shape:
    kind: str  # "box" | "checkbox" | "icon" | "panel"
    box: tuple[int, int, int, int]  # frame pixels x0, y0, x1, y1, exclusive end
    checked: bool | None = None  # checkboxes only


def find_shapes(image: np.ndarray, region: tuple[int, int, int, int] | None = None) -> list[Shape]:
    """The boxes, checkboxes, icons and panels in ``image`` (H x W x 3 uint8 RGB), in frame pixels;
    with ``region`` (x0, y0, x1, y1), only those that lie wholly inside it."""
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (0, 0, w, h) if region is None else region
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
    # the pooling factor comes from the frame, not the region: sizes mean the same either way
    f = max(1, round(max(h, w) / WORK_SIDE))
    if (x1 - x0) // f < 4 or (y1 - y0) // f < 4:
        return []
    small = _pool(image[y0:y1, x0:x1, :3], f)
    edge = _edges(small)
    # a fill of most of the frame is the page, whatever region is searched
    shapes = _regions(small, edge, PAGE * h * w / f**2) + _glyphs(edge)

    def frame(s: Shape) -> Shape:
        b = s.box
        box = (x0 + b[0] * f, y0 + b[1] * f, min(x1, x0 + b[2] * f), min(y1, y0 + b[3] * f))
        return Shape(s.kind, box, s.checked)

    return [frame(s) for s in shapes]


def _pool(image: np.ndarray, f: int) -> np.ndarray:
    """``image`` averaged over f x f blocks, as int16 planes (3, h, w): a 1 px outline survives
    as a blended line, where striding would drop it."""
    if f > 1:
        h, w = image.shape[0] // f * f, image.shape[1] // f * f
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image[:h, :w])).reduce(f))
    # planes, each contiguous: the neighbour differences run along rows of one channel at a time
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.int16)


def _edges(p: np.ndarray) -> np.ndarray:
    """Pixels on either side of a colour step: what bounds flat regions, and what ink is made of."""
    d = np.abs(p[:, :, 1:] - p[:, :, :-1])
    sx = np.maximum(np.maximum(d[0], d[1]), d[2]) > EDGE
    d = np.abs(p[:, 1:] - p[:, :-1])
    sy = np.maximum(np.maximum(d[0], d[1]), d[2]) > EDGE
    edge = np.zeros(p.shape[1:], bool)
    edge[:, 1:] |= sx
    edge[:, :-1] |= sx
    edge[1:] |= sy
    edge[:-1] |= sy
    return edge


def _regions(p: np.ndarray, edge: np.ndarray, page: float) -> list[Shape]:
    """Flat regions shaped like controls or panels, in working pixels."""
    H, W = edge.shape
    lab, _ = ndimage.label(~edge)
    found: list[tuple[str, tuple[int, int, int, int], np.ndarray]] = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        ys, xs = sl
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        if bh < BOX_HEIGHT[0] or bw < BOX_HEIGHT[0]:
            continue  # glyph counters, anti-aliasing, and tick boxes, which _glyphs reads
        if ys.start == 0 or xs.start == 0 or ys.stop == H or xs.stop == W:
            continue  # page background, header, sidebar: whatever the frame cuts
        if bh * bw > page:
            continue
        if bw >= PANEL_MIN[0] and bh >= PANEL_MIN[1]:
            kind = "panel"
        elif bh <= BOX_HEIGHT[1] and bw >= 1.3 * bh:
            kind = "box"
        else:
            continue
        # holes are what a fill encloses (labels, carets); a letter's stroke, flat inside when
        # bold, leaves its gaps open to the outside and fills little of its box
        filled = _fill(lab[sl] == i)
        if filled.sum() < SOLID * bh * bw:
            continue
        # straight sides: a quarter of the short side in (past a pill's round ends), each row and
        # column across is nearly all fill; a chart's band, cut by the price line, is not
        d = min(bh, bw) // 4
        if min(filled[d].mean(), filled[-1 - d].mean(), filled[:, d].mean(), filled[:, -1 - d].mean()) < 0.75:
            continue
        iy, ix = np.unravel_index(int(np.argmax(lab[sl] == i)), (bh, bw))
        found.append((kind, (xs.start, ys.start, xs.stop, ys.stop), p[:, ys.start + iy, xs.start + ix]))
    return [Shape(kind, _grow(edge, *box)) for kind, box, _ in _unstriped(found)]


def _unstriped(found: list[tuple[str, tuple[int, int, int, int], np.ndarray]]
               ) -> list[tuple[str, tuple[int, int, int, int], np.ndarray]]:
    """``found`` less stripes: fills of one colour stacked one thin line apart are a chart's
    grid bands or a list's rows, not controls."""
    striped = set()
    for a, (_, ba, ca) in enumerate(found):
        for b, (_, bb, cb) in enumerate(found[a + 1:], start=a + 1):
            apart = max(bb[1] - ba[3], ba[1] - bb[3])
            overlap = min(ba[2], bb[2]) - max(ba[0], bb[0])
            aligned = min(abs(ba[0] - bb[0]), abs(ba[2] - bb[2])) <= STRIPE_GAP
            if 0 <= apart <= STRIPE_GAP and overlap > 0 and aligned and np.abs(ca - cb).max() <= EDGE:
                striped.update((a, b))
    return [f for k, f in enumerate(found) if k not in striped]


def _grow(edge: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """A fill's box grown over its outline: the run of edge pixels beyond each side, along the
    middle row and column, less the one pixel that belongs to the outside's side of the step."""
    H, W = edge.shape
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2

    def run(line: np.ndarray) -> int:
        k = 0
        while k < len(line) and k < 6 and line[k]:
            k += 1
        return max(1, k - 1) if k else 0

    left = run(edge[cy, x0 - 1::-1]) if x0 else 0
    right = run(edge[cy, x1:]) if x1 < W else 0
    top = run(edge[y0 - 1::-1, cx]) if y0 else 0
    bottom = run(edge[y1:, cx]) if y1 < H else 0
    return (x0 - left, y0 - top, x1 + right, y1 + bottom)


# points of a blob's box, as shares of its sides: a cross's diagonals are ink short of its tips
# (a stroke's end is pointed), the middle of each side is bare
_T = np.linspace(0.18, 0.82, 9)
_DIAG = (np.concatenate([_T, _T]), np.concatenate([_T, 1 - _T]))
_S = np.array([0.04, 0.14])
_BARE = (np.concatenate([_S, 1 - _S, np.full(4, 0.5)]), np.concatenate([np.full(4, 0.5), _S, 1 - _S]))


def _glyphs(edge: np.ndarray) -> list[Shape]:
    """Tick boxes, toggle switches and close crosses: small blobs of edge pixels (an outline is
    one closed blob, whatever its fill) read by shape."""
    lab, _ = ndimage.label(edge, structure=np.ones((3, 3), bool))
    H, W = edge.shape
    out: list[Shape] = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = sl
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        if not (ICON_SIDE[0] <= bh <= CHECK_SIDE[1] + 2 and bw <= 2.3 * bh and bh <= 1.25 * bw):
            continue
        m = lab[sl] == i
        # the blob reaches one pixel beyond the outline (both sides of a step are edge)
        box = (xs.start + 1, ys.start + 1, xs.stop - 1, ys.stop - 1)
        square = abs(bw - bh) <= max(2, bh // 8)
        # cheap tests first, as most blobs are letters; filling holes is what makes a thick stroke
        # (flat inside, its two edges round it) or a box's outline round its fill one solid shape
        if square and bh >= CHECK_SIDE[0] + 2 and _straight(m, sides=4):
            filled = _fill(m)
            # an outline round a flat fill, not a small glyph that is edge all through
            if filled.mean() >= ROUNDED and (filled & ~m).mean() >= HOLLOW and _squarish(filled):
                # an empty box is one flat fill; a tick crosses its middle, and so does the edge of
                # a check mark drawn apart from the outline
                mid = edge[ys.start + bh * 3 // 10:ys.stop - bh * 3 // 10,
                           xs.start + bw * 3 // 10:xs.stop - bw * 3 // 10]
                out.append(Shape("checkbox", box, bool(mid.any())))
                continue
        if square and bh <= ICON_SIDE[1]:
            if not m[(_BARE[0] * bh).astype(int), (_BARE[1] * bw).astype(int)].any() and \
                    _is_cross(_fill(m)):
                # the hit area: twice the glyph, as a cross is drawn smaller than its button
                cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
                half = max(bh, bw) - 2
                out.append(Shape("icon", (max(0, math.floor(cx - half)), max(0, math.floor(cy - half)),
                                          min(W, math.ceil(cx + half)), min(H, math.ceil(cy + half)))))
        elif 1.5 * bh <= bw and bh >= CHECK_SIDE[0] + 2 and _straight(m, sides=2):
            checked = _switch(m, _fill(m))
            if checked is not None:
                out.append(Shape("checkbox", box, checked))
    return out


def _fill(m: np.ndarray) -> np.ndarray:
    """``m`` with its holes filled: the parts of the rest that do not reach its box's border (one
    labelling pass; scipy's binary_fill_holes erodes step by step, many times slower on a panel)."""
    holes, n = ndimage.label(~m)
    if n == 0:
        return m
    inner = np.ones(n + 1, bool)
    inner[holes[0]] = inner[holes[-1]] = inner[holes[:, 0]] = inner[holes[:, -1]] = False
    inner[0] = False
    return m | inner[holes]


def _straight(m: np.ndarray, sides: int) -> bool:
    """An outline blob's top and bottom (and with ``sides=4`` left and right) run straight through
    their middle; the blob's box may take in an anti-aliased stub beyond them."""
    bh, bw = m.shape
    a, b = bw * 3 // 10, bw - bw * 3 // 10
    if not ((m[0, a:b] | m[1, a:b]).all() and (m[-1, a:b] | m[-2, a:b]).all()):
        return False
    a, b = bh * 3 // 10, bh - bh * 3 // 10
    return sides == 2 or bool((m[a:b, 0] | m[a:b, 1]).all() and (m[a:b, -1] | m[a:b, -2]).all())


def _squarish(filled: np.ndarray) -> bool:
    """A square, its corners rounded off by up to a third of its side, and not a disc (a radio
    button, an O): an eighth of the side in from each edge, the chord across is most of the side."""
    bh, bw = filled.shape
    k = max(1, round(bh * 0.12))
    chords = filled[k].mean() + filled[-1 - k].mean() + filled[:, k].mean() + filled[:, -1 - k].mean()
    return bool(chords >= 4 * CHORD)


def _is_cross(filled: np.ndarray) -> bool:
    """Ink along both diagonals, none at the middles of the sides."""
    bh, bw = filled.shape
    diag = filled[(_DIAG[0] * bh).astype(int), (_DIAG[1] * bw).astype(int)]
    bare = filled[(_BARE[0] * bh).astype(int), (_BARE[1] * bw).astype(int)]
    return bool(diag.mean() >= 0.9 and not bare.any())


def _switch(m: np.ndarray, filled: np.ndarray) -> bool | None:
    """A toggle switch's state from a pill-shaped outline blob: on when its knob sits right; None
    when the blob is no pill (a word, a wide letter)."""
    bh, bw = m.shape
    # a pill's ends are round (its top and bottom run straight, _straight saw to that); a word's
    # ends are letters' straight stems
    k = max(1, round(bh * 0.12))
    if filled.mean() < 0.8 or max(filled[:, k].mean(), filled[:, -1 - k].mean()) > 0.8:
        return None
    inside, n = ndimage.label(filled & ~m)
    if n < 2:
        return None
    # the knob: a disc, the flat part inside that is as wide as tall and bare at its box's corners
    # (the rest of the track wraps round the knob, out to those corners); the roundest wins
    best, knob_x = math.inf, 0.0
    for j, sl in enumerate(ndimage.find_objects(inside), start=1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h < bh * 0.5 or abs(h - w) > max(2, h // 5):
            continue
        part = inside[sl] == j
        if part[0, 0] or part[0, -1] or part[-1, 0] or part[-1, -1]:
            continue
        sides = part[0].mean() + part[-1].mean() + part[:, 0].mean() + part[:, -1].mean()
        if sides < best:
            best, knob_x = sides, (sl[1].start + sl[1].stop) / 2
    return None if best == math.inf else knob_x > bw / 2
