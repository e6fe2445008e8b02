"""Ingest: sampled frames and actions -> embeddings -> batched writes, off the action loop.

The pipeline calls ``on_sampled`` / ``on_action`` on the event loop; they only
append to a bounded deque (the oldest frame is dropped, and counted, when the
writer falls behind) and return. One writer thread opens the database, embeds,
and writes a batch per transaction (``memory.batch_size`` frames or
``memory.flush_interval_s``, whichever comes first), so a SIGKILL loses at most
the frames not yet flushed. Any database failure (corrupt, foreign or newer file,
disk full, a write that did not take) disables memory: ``on_failure`` is called
once with the reason and the action loop carries on untouched.
"""

from __future__ import annotations

import collections
import io
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import structlog
from PIL import Image

from ..config import MemoryConfig
from ..frames import Frame
from ..actions import Feedback
from .embed import Embedder, default_embedder
from .store import ActionRecord, FrameRecord, MemoryStore, MemoryStoreError

log = structlog.get_logger(__name__)

IDLE_WAIT_S = 0.5  # longest an embedding waits for the policy to be idle


def encode_thumb(image: np.ndarray, width: int, fmt: str = "jpeg") -> tuple[bytes, tuple[int, int]]:
    h, w = image.shape[:2]
    tw = min(width, w)
    th = max(1, round(h * tw / w))
    img = Image.fromarray(np.ascontiguousarray(image))
    if (tw, th) != (w, h):
        img = img.resize((tw, th), Image.BOX, reducing_gap=2.0)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=75)
    return buf.getvalue(), (tw, th)


@dataclass
class IngestStats:
    queued: int = 0
    written: int = 0
    dropped: int = 0  # frames dropped because the writer fell behind
    actions: int = 0
    batches: int = 0
    retained_deleted: int = 0
    last_flush_ms: float = 0.0
    embed_ms_total: float = 0.0
    keyframes: int = 0  # frames queued for the fleet store
    outbox_dropped: int = 0


class MemoryIngest:
    def __init__(self, cfg: MemoryConfig, embedder: Embedder | None = None,
                 on_failure: Callable[[str, Exception], None] | None = None,
                 on_frame_written: Callable[[FrameRecord, np.ndarray | None], None] | None = None,
                 store_kwargs: dict[str, Any] | None = None, idle: threading.Event | None = None,
                 keyframer: Callable[[FrameRecord], bool] | None = None):
        self.cfg = cfg
        self.idle = idle  # set while no inference runs: embedding waits for it (bounded)
        self.embedder = embedder or default_embedder()
        self.on_failure = on_failure
        self.on_frame_written = on_frame_written  # e.g. the live regressor (runs in the writer thread)
        self.store_kwargs = store_kwargs or {}
        # with a fleet store: which frames go to the outbox (memory.sync.Keyframer); None: no outbox
        self.keyframer = keyframer
        self.stats = IngestStats()
        self.enabled = True
        self.failure: str | None = None
        self.record_run: str | None = cfg.record
        self._q: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq_ids: dict[tuple[str, int], int] = {}
        self._run_created = False
        self._readers: dict[str, Any] = {}  # stream -> Perceiver, while recording with memory.read_text
        self._read_text = cfg.read_text  # off for good once the OCR weights failed to load

    # -- the event-loop side: never blocks ----------------------------------------------------
    def on_sampled(self, frame: Frame) -> None:
        if not self.enabled:
            return
        if len(self._q) >= self.cfg.queue_max:
            try:
                self._q.popleft()
                self.stats.dropped += 1
            except IndexError:
                pass
        self._q.append(("frame", frame))
        self.stats.queued += 1
        self._wake.set()

    def on_action(self, frame: Frame, msg) -> None:
        if not self.enabled:
            return
        action = msg.model_dump(exclude_none=True, exclude={"latency_ms", "v"})
        self._q.append(("action", ActionRecord(msg.id, frame.stream, frame.seq, msg.published_ts, action)))
        self._wake.set()

    def on_feedback(self, fb: Feedback) -> None:
        """Verdicts: the executor's feedback on an action, already parsed by the pipeline
        (from MQTT or a WebRTC data channel)."""
        if not self.enabled:
            return
        self._q.append(("verdict", (fb.action_id, fb.status)))
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memory-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._ready.wait(timeout)

    # -- the writer thread ----------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        self.enabled = False
        self.failure = str(exc)
        self._q.clear()
        log.error("memory.disabled", reason=str(exc), error_type=type(exc).__name__, path=str(self.cfg.path))
        if self.on_failure is not None:
            try:
                self.on_failure(str(exc), exc)
            except Exception:
                log.exception("memory.failure_callback_error")

    def _run(self) -> None:
        try:  # below the policy and the event loop in the CPU scheduler (Linux: per-thread nice)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.cfg.writer_nice)
        except (AttributeError, OSError):
            pass
        try:
            store = MemoryStore(self.cfg.path, **self.store_kwargs)
        except MemoryStoreError as exc:
            self._ready.set()
            self._fail(exc)
            return
        except Exception as exc:  # anything else at open is just as fatal for memory
            self._ready.set()
            self._fail(MemoryStoreError(f"memory database {self.cfg.path}: {type(exc).__name__}: {exc}"))
            return
        self.store = store
        log.info("memory.ready", path=str(self.cfg.path), frames=store.count(), record=self.record_run)
        self._ready.set()
        frames: list[FrameRecord] = []
        images: list[np.ndarray] = []
        actions: list[ActionRecord] = []
        verdicts: list[tuple[str, str]] = []
        first_at: float | None = None
        last_retain = time.monotonic()
        try:
            while True:
                stopping = self._stop.is_set()
                self._wake.wait(0.05 if frames else 0.25)
                self._wake.clear()
                while self._q:
                    kind, item = self._q.popleft()
                    if kind == "frame" and self.idle is not None:
                        # between decisions, not during one: on two cores that is the
                        # difference between zero and a few ms added to each action
                        self.idle.wait(IDLE_WAIT_S)
                    if kind == "frame":
                        frames.append(self._record(item))
                        images.append(item.image)
                    elif kind == "action":
                        actions.append(item)
                    else:
                        verdicts.append(item)
                    if first_at is None:
                        first_at = time.monotonic()
                    if len(frames) >= self.cfg.batch_size:
                        break
                due = first_at is not None and (len(frames) >= self.cfg.batch_size or stopping or
                                                time.monotonic() - first_at >= self.cfg.flush_interval_s)
                if due:
                    self._flush(store, frames, images, actions, verdicts)
                    frames, images, actions, verdicts, first_at = [], [], [], [], None
                if time.monotonic() - last_retain > self.cfg.retain_every_s:
                    last_retain = time.monotonic()
                    self.stats.retained_deleted += store.retain(self.cfg.max_age_s, self.cfg.max_bytes)
                if stopping and not self._q:
                    break
        except MemoryStoreError as exc:
            self._fail(exc)
        except Exception as exc:
            log.exception("memory.writer_error")
            self._fail(MemoryStoreError(f"memory writer: {type(exc).__name__}: {exc}"))
        finally:
            store.close()

    def _record(self, frame: Frame) -> FrameRecord:
        t0 = time.perf_counter()
        emb = self.embedder.embed(frame.image)
        golden = self.record_run is not None
        thumb, size, fmt = None, (0, 0), "jpeg"
        width = self.cfg.golden_width if golden else self.cfg.thumb_width
        if width:
            fmt = "png" if golden else "jpeg"
            thumb, size = encode_thumb(frame.image, width, fmt)
        self.stats.embed_ms_total += (time.perf_counter() - t0) * 1e3
        text = self._read(frame) if golden and self._read_text else None
        return FrameRecord(stream=frame.stream, seq=frame.seq, ts=frame.wall_ts, width=frame.width,
                           height=frame.height, embedding=emb, kind="golden" if golden else "live",
                           run=self.record_run, instruction=frame.instruction, thumb=thumb, thumb_fmt=fmt,
                           thumb_size=size, text=text)

    def _read(self, frame: Frame) -> list | None:
        """A golden frame's text lines; None (recorded without them) when the OCR weights cannot load."""
        from ..perception.text import PerceptionWeightsError
        from .textdiff import reader, text_lines

        r = self._readers.get(frame.stream)
        if r is None:
            try:
                r = self._readers[frame.stream] = reader()
            except PerceptionWeightsError as exc:
                log.error("memory.read_text_unavailable", error=str(exc))
                self._read_text = False
                return None
        return text_lines(r.perceive(frame.image, frame.t_capture))

    def _flush(self, store: MemoryStore, frames, images, actions, verdicts) -> None:
        t0 = time.perf_counter()
        if self.record_run and frames and not self._run_created:
            store.create_run(self.record_run, frames[0].stream, frames[0].width, frames[0].height,
                             {"source": "daemon"}, replace=True)
            self._run_created = True
        outbox = None if self.keyframer is None else [self.keyframer(r) for r in frames]
        store.write_batch(frames, actions, verdicts, self._seq_ids, outbox=outbox)
        if outbox is not None:
            self.stats.keyframes += sum(outbox)
            # bounded even when the sync worker is not running at all
            self.stats.outbox_dropped += store.outbox_trim(self.cfg.fleet_backlog_max)
        if len(self._seq_ids) > 4096:  # only recent frames get actions
            for key in list(self._seq_ids)[:2048]:
                del self._seq_ids[key]
        self.stats.written += len(frames)
        self.stats.actions += len(actions)
        self.stats.batches += 1
        self.stats.last_flush_ms = (time.perf_counter() - t0) * 1e3
        log.debug("memory.flushed", frames=len(frames), actions=len(actions), total=self.stats.written,
                  last_seq=frames[-1].seq if frames else None, ms=round(self.stats.last_flush_ms, 2))
        if self.on_frame_written is not None:
            for rec, img in zip(frames, images):
                try:
                    self.on_frame_written(rec, img)
                except Exception:
                    log.exception("memory.frame_hook_error")
