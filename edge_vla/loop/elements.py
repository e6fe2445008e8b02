"""What a click landed on, read from the pixels: the box of the flat-coloured element under a point.

The loop remembers dead clicks (``loop.watchdog``). A signature cell is a poor unit for that: a
button spans several cells, and a model sure of the wrong button moves a few pixels and presses it
again, two tries a cell. Most UI elements are one fill colour, or a background bounded by an
outline: flooding that colour from the click point, inside a window around it, gives the element's
box. A flood that reaches the window's edge ran over page background (or a card taller than any
one element): no box, and the loop falls back to the cell.
"""

from __future__ import annotations

import math

import numpy as np

from ..actions import DeadArea, box_to_normalized, to_pixels

WINDOW = 0.3  # half-size of the search window: across, a share of the longer side; down, of the shorter
MAX_SIDE = 160  # the window is pooled down to about this many blocks a side
MAX_HEIGHT = 120  # 0..1000 units: a taller flood filled a card or a panel, not one element
TOLERANCE = 16  # largest channel difference from the element's colour (JPEG, anti-aliasing)
MIN_PIXELS = 6  # a smaller flood is a glyph's counter or a stray pixel, not an element


def element_at(image: np.ndarray, x: int, y: int, kind: str = "click") -> DeadArea | None:
    """The element a ``kind`` of click at the normalized point hit, as a ``DeadArea``; None where no
    one flat-coloured, bounded element holds the point (page background, a label's text, a photo)."""
    h, w = image.shape[:2]
    px, py = to_pixels(x, y, w, h)
    # wide enough for a button across a phone's width, flat enough to stay cheap on a 4K frame
    hx, hy = max(8, int(max(w, h) * WINDOW)), max(8, int(min(w, h) * WINDOW))
    s = max(1, math.ceil(2 * hx / MAX_SIDE))
    # windows start on a grid of the block size, so two clicks on one element flood the same blocks
    x0, y0 = max(0, (px - hx) // s * s), max(0, (py - hy) // s * s)
    x1, y1 = x0 + (min(w, px + hx) - x0) // s * s, y0 + (min(h, py + hy) - y0) // s * s
    if x1 <= x0 or y1 <= y0:
        return None
    win = image[y0:y1, x0:x1]
    cy, cx = min((py - y0) // s, (y1 - y0) // s - 1), min((px - x0) // s, (x1 - x0) // s - 1)
    # the commonest colour near the point: a click on a letter still seeds the button's fill
    step = max(1, s // 2)
    near = win[max(0, (cy - 2) * s):(cy + 3) * s:step, max(0, (cx - 2) * s):(cx + 3) * s:step, :3]
    colours, counts = np.unique(near.reshape(-1, 3) // 8, axis=0, return_counts=True)
    seed = colours[counts.argmax()].astype(np.int32) * 8 + 4
    # at full resolution (per channel, in uint8: a 4K window is millions of pixels), then a block
    # counts only when all of it matches: a 1 px outline still bounds the flood
    full = np.ones(win.shape[:2], bool)
    for c in range(3):
        lo, hi = max(0, int(seed[c]) - TOLERANCE), min(255, int(seed[c]) + TOLERANCE)
        full &= (win[..., c] >= lo) & (win[..., c] <= hi)
    mask = full.reshape(full.shape[0] // s, s, full.shape[1] // s, s).all(axis=(1, 3))
    r0, c0 = max(0, cy - 2), max(0, cx - 2)
    ys, xs = np.nonzero(mask[r0:cy + 3, c0:cx + 3])
    if not len(ys):
        return None
    i = int(np.argmin((ys + r0 - cy) ** 2 + (xs + c0 - cx) ** 2))
    region = _flood(mask, int(ys[i]) + r0, int(xs[i]) + c0)
    if region is None or region.sum() < MIN_PIXELS:
        return None
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    # one block more on each side: the blocks its outline or anti-aliased edge fell in belong to it too
    bx0, bx1 = max(0, x0 + (int(cols[0]) - 1) * s), min(w, x0 + (int(cols[-1]) + 2) * s)
    by0, by1 = max(0, y0 + (int(rows[0]) - 1) * s), min(h, y0 + (int(rows[-1]) + 2) * s)
    box = box_to_normalized((bx0, by0, bx1, by1), w, h)
    return DeadArea(kind, box) if box[3] - box[1] <= MAX_HEIGHT else None


def _flood(mask: np.ndarray, y: int, x: int) -> np.ndarray | None:
    """The 4-connected part of ``mask`` holding (y, x); None once it touches the mask's border."""
    region = np.zeros_like(mask)
    region[y, x] = True
    for _ in range(mask.shape[0] * mask.shape[1]):
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= mask
        if grown[0].any() or grown[-1].any() or grown[:, 0].any() or grown[:, -1].any():
            return None
        if (grown == region).all():
            return region
        region = grown
    return region
