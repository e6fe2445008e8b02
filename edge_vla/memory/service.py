"""The daemon's view of memory: one ingest for all streams, hooks, failure -> event.

``Daemon.build`` creates a ``MemoryService`` when ``memory.enabled``; every
pipeline it adds is attached (``on_sampled``/``on_action`` hooks only enqueue).
A failure anywhere in memory (opening or writing the database, the live
regression check) disables memory, logs ``memory.disabled`` and publishes a
``memory_disabled`` event on ``P/events``; the action loop never notices.
With ``memory.regress = NAME`` each written frame is compared with golden run
NAME and regressions are published as ``regression`` events.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import structlog

from .ingest import MemoryIngest
from .store import FrameRecord

if TYPE_CHECKING:
    from ..daemon import Daemon
    from ..pipeline import StreamPipeline

log = structlog.get_logger(__name__)


class MemoryService:
    def __init__(self, daemon: "Daemon"):
        self.daemon = daemon
        self.cfg = daemon.settings.memory
        self.ingest = MemoryIngest(self.cfg, on_failure=self._failed, on_frame_written=self._written,
                                   idle=getattr(daemon.executor, "idle", None))
        self.regressor = None
        self.regress_error: str | None = None
        self.events_published = 0
        self._pipelines: list[StreamPipeline] = []

    def attach(self, pipeline: "StreamPipeline") -> None:
        pipeline.on_sampled.append(self.ingest.on_sampled)
        pipeline.on_action.append(self.ingest.on_action)
        pipeline.on_feedback_hooks.append(self.ingest.on_feedback)
        self._pipelines.append(pipeline)

    def start(self) -> None:
        self.ingest.start()

    async def stop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.ingest.stop)

    @property
    def enabled(self) -> bool:
        return self.ingest.enabled

    # -- writer thread callbacks -------------------------------------------------------------
    def _event(self, kind: str, **fields) -> None:
        link = self.daemon.link
        if link is None:
            return

        def publish() -> None:
            deadline = time.monotonic() + 15
            while not link.connected and time.monotonic() < deadline:  # failures at startup come early
                time.sleep(0.1)
            link.event(kind, **fields)
            self.events_published += 1

        threading.Thread(target=publish, name="memory-event", daemon=True).start()

    def _failed(self, reason: str, exc: Exception) -> None:
        for p in self._pipelines:  # nothing is enqueued any more
            for hooks, fn in ((p.on_sampled, self.ingest.on_sampled), (p.on_action, self.ingest.on_action)):
                try:
                    hooks.remove(fn)
                except ValueError:
                    pass
        self._event("memory_disabled", reason=reason, error_type=type(exc).__name__,
                    path=str(self.cfg.path))

    def _reader(self, golden):
        """A text reader for the live side when the golden run was read and reading is on."""
        if not self.cfg.read_text or all(f.text is None for f in golden.frames):
            return None
        from ..perception.text import PerceptionWeightsError
        from .textdiff import reader

        try:
            return reader()
        except PerceptionWeightsError as exc:
            log.error("memory.read_text_unavailable", error=str(exc))
            return None

    def _written(self, rec: FrameRecord, image: np.ndarray | None) -> None:
        if self.cfg.regress is None or image is None or self.regress_error is not None:
            return
        if self.regressor is None:
            from .regress import GoldenRun, LiveRegressor

            try:
                golden = GoldenRun.load(self.ingest.store, self.cfg.regress)
                self.regressor = LiveRegressor(golden, reader=self._reader(golden))
            except Exception as exc:
                self.regress_error = str(exc)
                log.error("memory.regress_unavailable", run=self.cfg.regress, error=str(exc))
                self._event("regress_unavailable", run=self.cfg.regress, reason=str(exc))
                return
        report = self.regressor.step(image, rec.embedding, ts=rec.ts)
        if report.regression:
            log.warning("memory.regression", run=self.cfg.regress, stream=rec.stream, seq=rec.seq,
                        step=report.step, boxes=[c.box for c in report.changes])
            self._event("regression", run=self.cfg.regress, stream=rec.stream, frame_seq=rec.seq,
                        frame_ts=rec.ts, **report.as_event())
