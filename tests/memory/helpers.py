"""Shared bits for the memory tests: frames, a disk-quota VFS, a small golden run."""

from __future__ import annotations

import apsw
import numpy as np

from edge_vla.frames import make_frame
from edge_vla.memory.embed import GridEmbedder
from edge_vla.memory.store import FrameRecord

EMB = GridEmbedder()


def image(seed: int, w: int = 160, h: int = 90) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    x, y = rng.integers(0, w - 40), rng.integers(0, h - 30)
    img[y:y + 30, x:x + 40] = rng.integers(0, 255, 3)
    return img


def record(seed: int, ts: float, stream: str = "default", kind: str = "live", seq: int = 0) -> FrameRecord:
    img = image(seed)
    return FrameRecord(stream=stream, seq=seq, ts=ts, width=img.shape[1], height=img.shape[0],
                       embedding=EMB.embed(img), kind=kind, thumb=b"x" * 100, thumb_fmt="jpeg", thumb_size=(16, 9))


def frame(seed: int, seq: int, stream: str = "default"):
    return make_frame(image(seed), stream, seq, instruction="click Buy")


class QuotaVFS(apsw.VFS):
    """The default VFS, but the main database file cannot grow past ``limit`` bytes: SQLITE_FULL."""

    def __init__(self, name: str, limit: int):
        self.limit = limit
        super().__init__(name, "")

    def xOpen(self, name, flags):
        return QuotaFile(self, name, flags)


class QuotaFile(apsw.VFSFile):
    def __init__(self, vfs: QuotaVFS, name, flags):
        self.vfs = vfs
        super().__init__("", name, flags)

    def xWrite(self, data, offset):
        if offset + len(data) > self.vfs.limit:
            raise apsw.FullError("quota exceeded")
        return super().xWrite(data, offset)
