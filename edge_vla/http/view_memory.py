"""The live view's visual memory panel: stored frames by time, or by likeness to a stream's current
picture, with their thumbnails and actions. Read-only, through its own store connection, in one
worker thread that waits for the running inference like the memory writer does."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

IDLE_WAIT_S = 0.5
MAX_HITS = 48


class MemoryBrowser:
    """``latest_image(stream)``: the stream's newest picture (None when there is none)."""

    def __init__(self, path: Path, latest_image: Callable[[str], np.ndarray | None],
                 idle: threading.Event | None = None):
        self.path = Path(path)
        self._latest_image = latest_image
        self._idle = idle
        self._store = None
        self._retriever = None
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="view-memory")

    def close(self) -> None:
        self._worker.submit(self._close)
        self._worker.shutdown(wait=False)

    # -- the asyncio side --------------------------------------------------------------------------
    async def recent(self, stream: str | None, seconds: float, limit: int) -> list[dict]:
        return await self._run(self._recent, stream, seconds, min(limit, MAX_HITS))

    async def similar(self, stream: str, k: int) -> list[dict]:
        image = self._latest_image(stream)
        if image is None:
            raise KeyError(f"no picture of stream {stream!r} yet")
        return await self._run(self._similar, image, stream, min(k, MAX_HITS))

    async def thumb(self, thumb_id: int) -> tuple[str, bytes]:
        return await self._run(lambda: self._open().thumb(thumb_id))

    async def _run(self, fn, *args) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # -- the worker thread -------------------------------------------------------------------------
    def _open(self):
        if self._store is None:
            from ..memory.store import MemoryStore

            if not self.path.exists():
                raise FileNotFoundError(f"no memory database at {self.path} yet")
            self._store = MemoryStore(self.path, readonly=True)
        return self._store

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _recent(self, stream: str | None, seconds: float, limit: int) -> list[dict]:
        hits = self._open().frames_between(stream, time.time() - seconds, None, limit=100_000, kind="live")
        return [h.as_dict() for h in reversed(hits[-limit:])]  # newest first

    def _similar(self, image: np.ndarray, stream: str, k: int) -> list[dict]:
        if self._retriever is None:
            from ..memory.retrieval import Retriever

            self._retriever = Retriever(self._open())
        if self._idle is not None:  # the embedding is CPU work: not while the model runs
            self._idle.wait(IDLE_WAIT_S)
        return [h.as_dict() for h in self._retriever.by_image(image, k, stream)]
