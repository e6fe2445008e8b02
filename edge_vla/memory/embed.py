"""Frame embeddings: one pooled vector per frame and one vector per tile of a coarse grid.

``GridEmbedder`` is a fixed, deterministic descriptor (no weights, no downloads):
the frame is area-averaged once to a small working image and every vector is
read off it. Until the trained policy's vision encoder exists (issue 5) it is the
default; anything with the ``Embedder`` shape can replace it (the stored
``embedder`` name and dimension make a database refuse vectors of another kind).

Why this descriptor (measured with tools/memory_bench.py on the shared 2-core box):
- cost: one Pillow BOX resize plus a few numpy reductions, 3.9 ms per 1280x720
  frame, so 10 frames/s is ~4% of one core (a JPEG thumbnail adds ~2 ms);
- size: 256-d frame vector (1 KB float32) + 48 tiles x 64 uint8 (3 KB); with a
  160 px JPEG thumbnail about 7-11 KB per stored frame;
- it is what UI screens need: layout and colour at coarse scale (the frame
  vector: "which screen is this"), and per tile the mean colour and edge
  energy of 4x4 cells ("which part changed"). Pixel-exact comparison for
  regressions uses the golden run's lossless reference thumbnails (regress.py),
  so the embeddings can stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

GRID_COLS = 8
GRID_ROWS = 6
CELLS = 4  # cells per tile side
FRAME_DIM = 256
TILE_DIM = CELLS * CELLS * 4  # RGB means + edge energy per cell


@dataclass(frozen=True)
class Embedding:
    frame: np.ndarray  # (FRAME_DIM,) float32, zero-mean, unit length (cosine)
    tiles: np.ndarray  # (rows * cols, TILE_DIM) float32 in 0..1
    cols: int
    rows: int


class Embedder(Protocol):
    name: str
    frame_dim: int
    tile_dim: int
    cols: int
    rows: int

    def embed(self, image: np.ndarray) -> Embedding: ...


class GridEmbedder:
    name = "grid-v1"
    frame_dim = FRAME_DIM
    tile_dim = TILE_DIM
    cols = GRID_COLS
    rows = GRID_ROWS

    def embed(self, image: np.ndarray) -> Embedding:
        cw, ch = self.cols * CELLS, self.rows * CELLS  # 32 x 24 cells
        # Work at 2x the cell grid so each cell holds 2x2 samples for the edge energy.
        small = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((cw * 2, ch * 2), Image.BOX),
                           dtype=np.float32) * (1 / 255)
        cells = small.reshape(ch, 2, cw, 2, 3).mean(axis=(1, 3))  # (24, 32, 3)
        luma = small @ np.array([0.299, 0.587, 0.114], np.float32)
        gx = np.abs(np.diff(luma, axis=1, append=luma[:, -1:]))
        gy = np.abs(np.diff(luma, axis=0, append=luma[-1:, :]))
        edge = (gx + gy).reshape(ch, 2, cw, 2).mean(axis=(1, 3))  # (24, 32)
        feat = np.concatenate([cells, np.minimum(1.0, edge * 2)[..., None]], axis=2)  # (24, 32, 4)
        tiles = (feat.reshape(self.rows, CELLS, self.cols, CELLS, 4).transpose(0, 2, 1, 3, 4)
                 .reshape(self.rows * self.cols, TILE_DIM))
        # Frame vector: 16x12 luma layout (192) + 8x8 pooled colour/edge summary (64).
        lay = cells.mean(axis=2).reshape(12, 2, 16, 2).mean(axis=(1, 3)).ravel()
        col = feat.reshape(self.rows, CELLS, self.cols, CELLS, 4).mean(axis=(1, 3))  # (6, 8, 4)
        col = col[:, :, [0, 1, 2, 3]].reshape(-1)[:64] if col.size >= 64 else np.resize(col, 64)
        vec = np.concatenate([lay, col]).astype(np.float32)
        vec -= vec.mean()
        n = float(np.linalg.norm(vec))
        vec = vec / n if n > 1e-6 else np.full(FRAME_DIM, 1 / np.sqrt(FRAME_DIM), np.float32)
        return Embedding(frame=vec.astype(np.float32), tiles=tiles.astype(np.float32),
                         cols=self.cols, rows=self.rows)


def quantize_int8(v: np.ndarray) -> np.ndarray:
    """Unit-length (cosine) vectors to int8 with a fixed scale (|x| <= 1 -> |q| <= 127)."""
    return np.clip(np.rint(v * 127), -127, 127).astype(np.int8)


def quantize_bit(v: np.ndarray) -> np.ndarray:
    """Sign bits, packed (len(v) must be a multiple of 8)."""
    return np.packbits(v > 0)


def tiles_to_bytes(tiles: np.ndarray) -> bytes:
    return np.clip(np.rint(tiles * 255), 0, 255).astype(np.uint8).tobytes()


def tiles_from_bytes(data: bytes, n_tiles: int = GRID_COLS * GRID_ROWS) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(n_tiles, -1).astype(np.float32) * (1 / 255)


def tile_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per tile: the largest per-cell change (0..1): a local change is not diluted by the tile."""
    d = np.abs(a - b).reshape(a.shape[0], CELLS * CELLS, 4)
    return d.max(axis=(1, 2))


def default_embedder() -> Embedder:
    return GridEmbedder()
