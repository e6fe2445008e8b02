"""Visual regression by what the screen says: a golden frame's text lines against the live frame's.

Pixel differences find that something changed; reading says what: a button that said "Buy" and
now says "Sell" is one change, boxed by its line, even where the two words cover the same pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz

from ..perception.layer import ElementLayer, Perceiver, iou
from ..perception.match import norm
from ..perception.text import TextReader

SAME_TEXT = 0.8  # fuzzy ratio at or above which two readings are the same words (a misread letter)
SAME_PLACE = 0.3  # box IoU for a live line to stand where a golden line stood
_DIGITS = re.compile(r"\d+")
SURE = 0.8  # recognition confidence below which a reading may be noise (small text in a lossy frame)

Line = tuple[tuple[int, int, int, int], str, float]  # box in 0..1000 frame coordinates, text, confidence


@dataclass(frozen=True)
class TextChange:
    box: tuple[int, int, int, int]  # 0..1000: the golden line's box and the live one's, joined
    golden: str
    live: str  # "" when nothing is read there any more

    def as_dict(self) -> dict:
        return {"box": list(self.box), "golden": self.golden, "live": self.live}


def reader(threads: int = 1) -> Perceiver:
    """An incremental reader for one stream of golden or live frames (the OCR weights in the
    installed wheel; ``PerceptionWeightsError`` when they are missing or unreadable)."""
    return Perceiver(TextReader(threads=threads))


def text_lines(layer: ElementLayer) -> list[Line]:
    """The layer's text elements as (0..1000 box, text, confidence): the form a golden run stores."""
    w, h = max(1, layer.width), max(1, layer.height)
    return [((e.box[0] * 1000 // w, e.box[1] * 1000 // h, -(-e.box[2] * 1000 // w), -(-e.box[3] * 1000 // h)),
             e.text, round(float(e.confidence), 3)) for e in layer.elements if e.kind == "text" and e.text.strip()]


def same_words(a: str, b: str) -> bool:
    """Fuzzy for letters (a misread one is no change), exact for digits (a price that moved is)."""
    na, nb = norm(a), norm(b)
    return na == nb or (_DIGITS.findall(na) == _DIGITS.findall(nb) and fuzz.ratio(na, nb) / 100 >= SAME_TEXT)


def _within(a, b) -> bool:
    """Most of box a lies inside box b."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy >= 0.5 * max(1, (a[2] - a[0]) * (a[3] - a[1]))


def _joined(lines) -> str:
    return " ".join(t for _, t in sorted(lines, key=lambda ln: (ln[0][0], ln[0][1])))


def text_changes(golden: list[Line], live: list[Line]) -> list[TextChange]:
    """Golden lines that now read differently or are gone. A golden line is matched to the live
    line it overlaps most. No change when they say the same words, or when the reader split or
    merged lines differently this time: the live lines over the golden one, joined, or the golden
    lines under the live one, joined, say the same. No change either where a reading is unsure.
    Text that only appears live is left to the pixel comparison."""
    out: list[TextChange] = []
    for gbox, gtext, gconf in golden:
        if not norm(gtext) or gconf < SURE:
            continue
        near = [(iou(gbox, lb), lb, lt, lc) for lb, lt, lc in live if iou(gbox, lb) >= SAME_PLACE or _within(lb, gbox)]
        if not near:
            out.append(TextChange(gbox, gtext, ""))
            continue
        _, lbox, ltext, lconf = max(near, key=lambda n: n[0])
        if any(same_words(gtext, lt) for _, _, lt, _ in near) or lconf < SURE \
                or same_words(gtext, _joined([(lb, lt) for _, lb, lt, _ in near if _within(lb, gbox)])) \
                or same_words(ltext, _joined([(b, t) for b, t, _ in golden if _within(b, lbox)])):
            continue
        box = (min(gbox[0], lbox[0]), min(gbox[1], lbox[1]), max(gbox[2], lbox[2]), max(gbox[3], lbox[3]))
        out.append(TextChange(box, gtext, ltext))
    return out
