"""The daemon's view of memory: one ingest for all streams, hooks, failure -> event.

``Daemon.build`` creates a ``MemoryService`` when ``memory.enabled``; every
pipeline it adds is attached (``on_sampled``/``on_action`` hooks only enqueue).
A failure anywhere in memory (opening or writing the database, the live
regression check) disables memory, logs ``memory.disabled`` and publishes a
``memory_disabled`` event on ``P/events``; the action loop never notices.
With ``memory.regress = NAME`` each written frame is compared with golden run
NAME and regressions are published as ``regression`` events. With ``memory.fleet_uri``
keyframes and golden frames are queued in the outbox and a ``FleetSync`` thread ships
them; the golden run to regress against is read from the fleet store.
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
        self.sync = None
        keyframer = None
        if self.cfg.fleet_uri and self.cfg.fleet_sync:
            from .sync import Keyframer

            keyframer = Keyframer(self.cfg.fleet_keyframe_delta, self.cfg.fleet_keyframe_max_s)
        self.ingest = MemoryIngest(self.cfg, on_failure=self._failed, on_frame_written=self._written,
                                   idle=getattr(daemon.executor, "idle", None), keyframer=keyframer)
        if keyframer is not None:
            from .fleet import open_fleet
            from .sync import FleetSync

            device = daemon.settings.device_id
            self.sync = FleetSync(self.cfg.path, lambda: open_fleet(self.cfg, device), device,
                                  batch=self.cfg.fleet_batch, backlog_max=self.cfg.fleet_backlog_max,
                                  backoff_max_s=self.cfg.fleet_backoff_max_s, nice=self.cfg.writer_nice,
                                  on_state=self._fleet_state, ready=self.ingest._ready)
        self._regress_retry_at = 0.0
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
        if self.sync is not None:
            self.sync.start()

    async def stop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.ingest.stop)
        if self.sync is not None:
            await asyncio.to_thread(self.sync.stop)

    def _fleet_state(self, state: str, fields: dict) -> None:
        if state in ("unavailable", "disabled"):
            self._event(f"fleet_{state}", uri=self.cfg.fleet_uri, **fields)
        elif state == "ok" and self.sync is not None and self.sync.stats.outages:
            self._event("fleet_recovered", uri=self.cfg.fleet_uri, failures=self.sync.stats.failures)

    def _load_golden(self, name: str):
        """The golden run: from the fleet store when one is configured (through the sync thread,
        which owns the connection), else from the local database."""
        from .regress import GoldenRun

        if not self.cfg.fleet_uri:
            return GoldenRun.load(self.ingest.store, name)
        if self.sync is not None:
            return self.sync.submit(lambda fleet: GoldenRun.load(fleet, name)).result(
                timeout=10 * self.cfg.fleet_timeout_s * (self.cfg.fleet_retries + 1))
        from .fleet import open_fleet

        with open_fleet(self.cfg, self.daemon.settings.device_id) as fleet:
            return GoldenRun.load(fleet, name)

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
            from .fleet import FleetUnavailable
            from .regress import LiveRegressor

            if time.monotonic() < self._regress_retry_at:
                return
            try:
                golden = self._load_golden(self.cfg.regress)
                self.regressor = LiveRegressor(golden, reader=self._reader(golden))
            except FleetUnavailable as exc:  # the fleet store is down: try again later, not never
                self._regress_retry_at = time.monotonic() + 30
                log.warning("memory.regress_waiting", run=self.cfg.regress, error=str(exc))
                return
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
