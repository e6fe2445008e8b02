"""Matching what an instruction names against what the screen says: fuzzy, case- and space-blind,
digits exact (``#7368`` is not ``#7369``), over every short span of the instruction's words."""

from __future__ import annotations

import re

import numpy as np
from rapidfuzz import fuzz, process

MAX_SPAN = 6  # words: the longest label an instruction names
_WORD = re.compile(r"[^\s'\"“”‘’]+")
_KEEP = re.compile(r"[^0-9a-z#@%$&+]")
_DIGITS = re.compile(r"\d+")


def words(instruction: str) -> list[str]:
    return [w.strip(",.;:!?()") for w in _WORD.findall(instruction) if w.strip(",.;:!?()")]


def norm(text: str) -> str:
    return _KEEP.sub("", text.lower())


def spans(ws: list[str]) -> list[tuple[int, int]]:
    return [(i, n) for i in range(len(ws)) for n in range(1, MAX_SPAN + 1) if i + n <= len(ws)]


def match_matrix(texts: list[str], instruction: str) -> tuple[np.ndarray, list[tuple[int, int]], list[str]]:
    """Similarity 0..1 of each text (rows) against each span of the instruction (columns)."""
    ws = words(instruction)
    sp = spans(ws)
    span_text = [norm("".join(ws[i:i + n])) for i, n in sp]
    elem = [norm(t) for t in texts]
    if not elem or not sp:
        return np.zeros((len(elem), len(sp)), np.float32), sp, ws
    m = process.cdist(elem, span_text, scorer=fuzz.ratio, dtype=np.uint8).astype(np.float32) / 100
    e_dig = [_DIGITS.findall(t) for t in elem]
    s_dig = [_DIGITS.findall(t) for t in span_text]
    for i, d in enumerate(e_dig):
        for j, sd in enumerate(s_dig):
            if d != sd and (d or sd):
                m[i, j] = 0.0
    for i, t in enumerate(elem):
        if not t:
            m[i] = 0.0
    return m, sp, ws


def best_matches(texts: list[str], instruction: str) -> list[tuple[float, int, int]]:
    """For each text: (score, first word, word count) of the span it matches best."""
    m, sp, _ = match_matrix(texts, instruction)
    out = []
    for row in m:
        if not len(row):
            out.append((0.0, 0, 0))
            continue
        j = int(row.argmax())
        out.append((float(row[j]), sp[j][0], sp[j][1]))
    return out


PART = 90  # partial-match score (0..100) at which a span counts as found inside a longer line


def locate(text: str, instruction: str) -> tuple[float, float] | None:
    """Where in ``text`` (as fractions of its length) the longest instruction span it contains
    lies, when that is only part of the line: the OCR reads "New here? Create an account" as one
    line, and the link is its end. None when no span is found, or it is most of the line."""
    t = text.lower()
    if len(t) < 4:
        return None
    m, _, ws = match_matrix([text], instruction)
    if m.size and m.max() >= 0.8:
        return None  # a span names the whole line
    best = None
    for i, n in spans(ws):
        span = " ".join(ws[i:i + n]).lower()
        if len(span) < 3 or (best is not None and len(span) <= best[0]) or len(span) > 0.8 * len(t):
            continue
        if _DIGITS.findall(span) and not set(_DIGITS.findall(span)) <= set(_DIGITS.findall(t)):
            continue
        a = fuzz.partial_ratio_alignment(span, t, score_cutoff=PART)
        if a is not None and a.score >= PART:
            best = (len(span), a.dest_start / len(t), a.dest_end / len(t))
    return None if best is None else (best[1], best[2])
