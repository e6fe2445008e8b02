"""The ingest: hooks only enqueue, a writer thread batches, failures disable memory once."""

from __future__ import annotations

import time

import apsw

from edge_vla.actions import ActionMessage, Feedback
from edge_vla.config import MemoryConfig
from edge_vla.memory.ingest import MemoryIngest
from edge_vla.memory.store import MemoryStore

from .helpers import frame


def cfg(tmp_path, **kw) -> MemoryConfig:
    return MemoryConfig(enabled=True, path=tmp_path / "m.db", **kw)


def msg_for(f) -> ActionMessage:
    return ActionMessage(type="click", x=10, y=20, seq=0, stream=f.stream, frame_ts=f.wall_ts,
                         published_ts=f.wall_ts, deadline=f.wall_ts + 1, model="t", latency_ms={"total": 1.0})


def test_hooks_enqueue_fast_and_batches_are_written(tmp_path):
    ing = MemoryIngest(cfg(tmp_path, batch_size=8, flush_interval_s=0.2))
    ing.start()
    assert ing.wait_ready(10) and ing.enabled
    frames = [frame(i % 7, i) for i in range(40)]
    t0 = time.perf_counter()
    for f in frames:
        ing.on_sampled(f)
    per_call_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
    m = msg_for(frames[5])
    ing.on_action(frames[5], m)
    ing.on_feedback(Feedback(v=1, action_id=m.id, status="executed", ts=1))
    ing.stop()
    assert per_call_ms < 0.5, per_call_ms  # the event loop never waits for embedding or the database
    assert ing.stats.written == 40 and ing.stats.batches >= 5 and ing.failure is None
    with MemoryStore(tmp_path / "m.db", readonly=True) as st:
        assert st.count() == 40
        hit = [h for h in st.frames_between("default", None, None, 100) if h.seq == 5][0]
        assert hit.actions[0]["type"] == "click" and hit.actions[0]["verdict"] == "executed"
        assert st.thumb(hit.thumb)[0] == "jpeg"


def test_queue_is_bounded_oldest_dropped(tmp_path):
    ing = MemoryIngest(cfg(tmp_path, queue_max=5))  # not started: nobody drains
    for i in range(12):
        ing.on_sampled(frame(i, i))
    assert len(ing._q) == 5 and ing.stats.dropped == 7
    assert [item[1].seq for item in ing._q] == [7, 8, 9, 10, 11]


def test_newer_schema_disables_memory_once_with_the_reason(tmp_path):
    MemoryStore(tmp_path / "m.db").close()
    c = apsw.Connection(str(tmp_path / "m.db"))
    c.execute("PRAGMA user_version=7")
    c.close()
    calls = []
    ing = MemoryIngest(cfg(tmp_path), on_failure=lambda reason, exc: calls.append((reason, type(exc).__name__)))
    ing.start()
    ing.wait_ready(10)
    ing.stop()
    assert not ing.enabled and len(calls) == 1
    assert calls[0][1] == "NewerSchema" and "schema version 7 is newer" in calls[0][0]
    ing.on_sampled(frame(1, 1))  # disabled: a no-op
    assert len(ing._q) == 0


def test_write_failure_midway_disables_memory(tmp_path):
    from .helpers import QuotaVFS

    vfs = QuotaVFS("quota-ingest", limit=300_000)
    try:
        calls = []
        ing = MemoryIngest(cfg(tmp_path, batch_size=4, flush_interval_s=0.05, golden_width=640, thumb_width=640),
                           on_failure=lambda reason, exc: calls.append(reason),
                           store_kwargs={"vfs": "quota-ingest"})
        ing.start()
        ing.wait_ready(10)
        for i in range(400):
            ing.on_sampled(frame(i, i))
            if calls:
                break
            time.sleep(0.002)
        ing.stop()
        assert calls and ("disk full" in calls[0] or "write failed" in calls[0]) and not ing.enabled
    finally:
        vfs.unregister()
