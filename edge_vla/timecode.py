"""A capture timestamp drawn into the picture, so it survives video encoding.

A WebRTC receiver only knows when a frame *arrived*; to measure capture-to-action
the publisher draws its capture time (unix ms, modulo 2**32) as black/white
blocks in the top-left corner: 4 marker blocks (1010) then 32 data bits,
in 2 rows of 18. Blocks are ``width // 40`` pixels (at least 8), big enough
to survive VP8/H.264 at ordinary bitrates.
"""

from __future__ import annotations

import time

import numpy as np

MARKER = (1, 0, 1, 0)
BITS = 32
PER_ROW = 18


def block_size(width: int) -> int:
    return max(8, width // 40)


def stamp(image: np.ndarray, wall_ts: float | None = None) -> np.ndarray:
    """Draw ``wall_ts`` (default: now) into ``image`` in place; returns it."""
    ms = int(round((time.time() if wall_ts is None else wall_ts) * 1000)) & 0xFFFFFFFF
    bits = list(MARKER) + [(ms >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    b = block_size(image.shape[1])
    for i, bit in enumerate(bits):
        r, c = divmod(i, PER_ROW)
        image[r * b:(r + 1) * b, c * b:(c + 1) * b] = 255 if bit else 0
    return image


def read(image: np.ndarray, now: float | None = None) -> float | None:
    """The wall time drawn by ``stamp``, or None when no code is there."""
    b = block_size(image.shape[1])
    if image.shape[0] < 2 * b or image.shape[1] < PER_ROW * b:
        return None
    q = b // 4  # sample the block centre: edges blur under compression
    bits = []
    for i in range(len(MARKER) + BITS):
        r, c = divmod(i, PER_ROW)
        cell = image[r * b + q:(r + 1) * b - q, c * b + q:(c + 1) * b - q]
        bits.append(1 if cell.mean() > 127 else 0)
    if tuple(bits[: len(MARKER)]) != MARKER:
        return None
    ms = 0
    for bit in bits[len(MARKER):]:
        ms = (ms << 1) | bit
    now_ms = int((time.time() if now is None else now) * 1000)
    # unwrap: the full time is the one nearest to now with these low 32 bits
    base = now_ms - (now_ms & 0xFFFFFFFF)
    candidates = [base - (1 << 32) + ms, base + ms, base + (1 << 32) + ms]
    return min(candidates, key=lambda t: abs(t - now_ms)) / 1000
