"""The sync worker: the local database's outbox -> the fleet store, resumable and never in the loop's way.

``Keyframer`` picks what is worth shipping (frames where the screen changed, one heartbeat frame per
``fleet_keyframe_max_s`` of a steady screen, every golden frame); the ingest writes those frames'
outbox rows in the same transaction as the frames. ``FleetSync`` (its own thread, or
``edge-vla memory sync`` as its own process) reads unsent rows in frame order, upserts them under
stable ids (a resend after a crash overwrites, never duplicates), then marks them sent. While the
fleet store is unreachable it backs off (doubling up to ``fleet_backoff_max_s``), logs once per outage,
counts, and carries on; the backlog is bounded by ``fleet_backlog_max`` (oldest live frames dropped).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import structlog

from .embed import tile_distances
from .fleet import FleetFrame, FleetStore, FleetStoreError, FleetUnavailable, frame_payload, golden_point_id, \
    live_point_id
from .store import FrameRecord, MemoryStore, MemoryStoreError

log = structlog.get_logger(__name__)

MAX_BATCH_BYTES = 4 * 1024 * 1024  # one upsert stays well under a server's request limit (32 MB default)


class Keyframer:
    """Per stream: is this frame a keyframe (the screen changed since the last one)?"""

    def __init__(self, delta: float, max_s: float):
        self.delta = delta
        self.max_s = max_s
        self._last: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, rec: FrameRecord) -> bool:
        if rec.kind == "golden":
            return True  # a golden run is the reference: alignment needs every frame
        last = self._last.get(rec.stream)
        key = (last is None or rec.ts - last[1] >= self.max_s
               or float(tile_distances(rec.embedding.tiles, last[0]).max()) >= self.delta)
        if key:
            self._last[rec.stream] = (rec.embedding.tiles, rec.ts)
        return key


def fleet_frame(row: dict[str, Any], device: str, epoch: str) -> FleetFrame:
    """A local frame row (``MemoryStore.fleet_rows``) as a fleet point."""
    pid = golden_point_id(row["run"], row["stream"], row["seq"]) if row["run"] else \
        live_point_id(device, epoch, row["id"])
    return FleetFrame(pid, row["vector"], frame_payload(
        device=device, stream=row["stream"], seq=row["seq"], ts=row["ts"], kind=row["kind"], run=row["run"],
        width=row["width"], height=row["height"], instruction=row["instruction"], tiles=row["tiles"],
        thumb=row["thumb"], thumb_fmt=row["thumb_fmt"], thumb_size=row["thumb_size"], text=row["text"],
        actions=row["actions"], local_id=row["id"]))


def expected_point_ids(store: MemoryStore, device: str) -> dict[int, int]:
    """local frame id -> fleet point id for every frame the outbox ever queued (checks and tools)."""
    epoch = store.epoch
    out = {}
    for fid, stream, seq, run in store.conn.execute(
            "SELECT f.id, f.stream, f.seq, f.run FROM outbox o JOIN frames f ON f.id = o.frame_id"):
        out[fid] = golden_point_id(run, stream, seq) if run else live_point_id(device, epoch, fid)
    return out


@dataclass
class SyncStats:
    sent: int = 0
    batches: int = 0
    expired: int = 0  # queued frames deleted locally (retention) before they were sent
    failures: int = 0  # attempts that met an unreachable fleet store
    outages: int = 0
    dropped: int = 0  # unsent live keyframes dropped to keep the backlog bounded
    pending: int = 0
    bytes_sent: int = 0
    last_error: str | None = None
    state: str = "starting"  # starting / ok / unavailable / disabled


class FleetSync:
    """Ships the outbox of ``db_path`` to the fleet store made by ``open_store`` (called in the worker
    thread: qdrant's local mode keeps a sqlite connection that belongs to one thread)."""

    def __init__(self, db_path: str | Path, open_store: Callable[[], FleetStore], device_id: str, *,
                 batch: int = 64, backlog_max: int = 50_000, backoff_max_s: float = 30.0, poll_s: float = 0.5,
                 nice: int = 10, on_state: Callable[[str, dict], None] | None = None,
                 ready: threading.Event | None = None):
        self.db_path = Path(db_path)
        self.open_store = open_store
        self.device_id = device_id
        self.batch = batch
        self.backlog_max = backlog_max
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.nice = nice
        self.on_state = on_state  # e.g. publish fleet_unavailable / fleet_recovered on P/events
        self.ready = ready  # set once the local database exists (the ingest creates and migrates it)
        self.stats = SyncStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._runs_checked: set[str] = set()
        self.fleet: FleetStore | None = None
        self.store: MemoryStore | None = None

    # -- the caller's side -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def submit(self, fn: Callable[[FleetStore], Any]) -> Future:
        """Run ``fn(fleet_store)`` in the sync thread (between batches); e.g. load a golden run."""
        fut: Future = Future()
        self._jobs.put((fn, fut))
        self._wake.set()
        return fut

    # -- one step, usable without the thread (the CLI, tools) -----------------------------------
    def open(self) -> None:
        if self.store is None:
            self.store = MemoryStore(self.db_path, check=False)
            self.epoch = self.store.epoch
        if self.fleet is None:
            self.fleet = self.open_store()

    def close(self) -> None:
        for res in (self.fleet, self.store):
            if res is not None:
                res.close()
        self.fleet = self.store = None

    def _check_run(self, name: str) -> None:
        """Before a run's first frame goes out (per process): the fleet's run row must be this recording's.
        A run recorded again here under the same name replaces the fleet's copy; a restart finds the same
        ``created`` and changes nothing."""
        if name in self._runs_checked:
            return
        info = self.store.run_info(name)
        theirs = self.fleet._run_payload(name)
        if theirs is not None and theirs.get("created") != info["created"]:
            self.fleet.delete_run(name)
            log.info("fleet.run_replaced", run=name)
        if theirs is None or theirs.get("created") != info["created"]:
            self.fleet.put_run(name, info["stream"], info["width"], info["height"], info["info"],
                               created=info["created"], device=self.device_id)
        self._runs_checked.add(name)

    def step(self) -> int:
        """Send one batch; returns how many frames were acknowledged (0: nothing pending).
        Raises FleetUnavailable / FleetStoreError; nothing is marked sent unless the upsert returned."""
        self.open()
        st, fl = self.store, self.fleet
        self.stats.dropped += st.outbox_trim(self.backlog_max)
        ids = st.outbox_pending(self.batch)
        if not ids:
            self.stats.pending = 0
            return 0
        rows = st.fleet_rows(ids)
        gone = sorted(set(ids) - {r["id"] for r in rows})
        if gone:  # deleted by retention before it could be sent
            st.outbox_forget(gone)
            self.stats.expired += len(gone)
        frames, size, sent = [], 0, []
        for r in rows:
            b = len(r["tiles"]) + len(r["thumb"] or b"") + 1024
            if frames and size + b > MAX_BATCH_BYTES:
                break
            if r["run"]:
                self._check_run(r["run"])
            frames.append(fleet_frame(r, self.device_id, self.epoch))
            sent.append(r["id"])
            size += b
        before = fl.stats_.bytes_sent
        fl.upsert(frames)
        st.outbox_sent(sent)
        self.stats.sent += len(sent)
        self.stats.batches += 1
        self.stats.bytes_sent += fl.stats_.bytes_sent - before
        self.stats.pending = st.outbox_counts()["pending"]
        log.debug("fleet.synced", frames=len(sent), total=self.stats.sent, pending=self.stats.pending)
        return len(sent)

    def drain(self, deadline_s: float | None = None) -> dict[str, Any]:
        """Send until nothing is pending (the CLI after recording a run)."""
        end = None if deadline_s is None else time.monotonic() + deadline_s
        while self.step():
            if end is not None and time.monotonic() > end:
                break
        return self.summary()

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {"sent": s.sent, "pending": s.pending, "expired": s.expired, "dropped": s.dropped,
                "failures": s.failures, "outages": s.outages, "bytes_sent": s.bytes_sent, "state": s.state,
                "last_error": s.last_error}

    # -- the thread ------------------------------------------------------------------------------
    def _set_state(self, state: str, **fields: Any) -> None:
        if state == self.stats.state:
            return
        self.stats.state = state
        if self.on_state is not None:
            try:
                self.on_state(state, fields)
            except Exception:
                log.exception("fleet.state_callback_error")

    def _jobs_run(self) -> None:
        while True:
            try:
                fn, fut = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                if self.fleet is None:
                    self.fleet = self.open_store()
                fut.set_result(fn(self.fleet))
            except BaseException as exc:
                fut.set_exception(exc)

    def _run(self) -> None:
        try:  # below the policy in the CPU scheduler, like the memory writer
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (AttributeError, OSError):
            pass
        backoff = 0.0
        if self.ready is not None:
            while not self.ready.wait(0.5):
                if self._stop.is_set():
                    return
        try:
            while not self._stop.is_set():
                self._jobs_run()
                try:
                    n = self.step()
                except FleetUnavailable as exc:
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)
                    if self.stats.state != "unavailable":
                        self.stats.outages += 1
                        log.warning("fleet.unavailable", error=str(exc), pending=self.stats.pending)
                    self._set_state("unavailable", error=str(exc))
                    backoff = min(self.backoff_max_s, max(0.5, backoff * 2))
                    self._wake.wait(backoff)
                    self._wake.clear()
                    continue
                if self.stats.state == "unavailable":
                    log.info("fleet.recovered", pending=self.stats.pending, failures=self.stats.failures)
                backoff = 0.0
                self._set_state("ok")
                if n == 0:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        except (FleetStoreError, MemoryStoreError) as exc:
            # a refused key, a missing extra, a broken local file: retrying will not help; the
            # outbox keeps its (bounded) backlog for when it is fixed
            self.stats.last_error = str(exc)
            log.error("fleet.disabled", error=str(exc))
            self._set_state("disabled", error=str(exc))
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("fleet.sync_error")
            self._set_state("disabled", error=self.stats.last_error)
        finally:
            self._jobs_fail()
            self.close()

    def _jobs_fail(self) -> None:
        while True:
            try:
                _, fut = self._jobs.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(FleetUnavailable("fleet sync stopped"))
