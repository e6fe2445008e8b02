"""The sqlite-vec store through apsw: writes, KNN filters, retention, schema, bad files, full disk."""

from __future__ import annotations

import apsw
import numpy as np
import pytest

from edge_vla.memory.store import (
    _V1, APPLICATION_ID, SCHEMA_VERSION, ActionRecord, CorruptDatabase, ForeignDatabase, MemoryStore,
    NewerSchema, WriteFailed,
)

from .helpers import EMB, QuotaVFS, image, record


def test_write_knn_filters_and_actions(tmp_path):
    with MemoryStore(tmp_path / "m.db") as st:
        assert st._one("PRAGMA journal_mode") == "wal" and st.schema_version == SCHEMA_VERSION
        recs = [record(i % 5, 1000.0 + i, stream="a" if i % 2 else "b", seq=i) for i in range(40)]
        ids = st.write_batch(recs, [ActionRecord("act-1", "a", 3, 1003.5, {"type": "click", "x": 1, "y": 2})],
                             [("act-1", "executed")])
        assert len(ids) == 40 and st.count() == 40
        q = EMB.embed(image(3)).frame
        hits = st.knn(q, k=3)
        assert hits[0].distance < 1e-4 and len(hits) == 3
        only_a = st.knn(q, k=50, stream="a", t_from=1010, t_to=1030)
        assert only_a and all(h.stream == "a" and 1010 <= h.ts <= 1030 for h in only_a)
        acted = st.knn(q, k=1, stream="a", t_to=1003.0)[0]
        assert acted.seq == 3 and acted.actions == [{"type": "click", "x": 1, "y": 2, "verdict": "executed"}]
        assert [h.ts for h in st.frames_between("b", 1000, 1010)] == [1000.0, 1002.0, 1004.0, 1006.0, 1008.0, 1010.0]
        assert st.frame_vector(ids[0]).tobytes() == recs[0].embedding.frame.tobytes()


def test_retention_by_age_and_size_keeps_golden(tmp_path):
    with MemoryStore(tmp_path / "m.db") as st:
        st.create_run("g", "default", 160, 90)
        st.write_batch([record(1, 10.0, kind="golden")])
        st.conn.execute("UPDATE frames SET run='g'")
        st.write_batch([record(i, 100.0 + i, seq=i) for i in range(200)])
        assert st.retain(max_age_s=50, max_bytes=None, now=200.0) == 50  # ts < 150 go
        assert st.count("golden") == 1 and st.count("live") == 150
        st.write_batch([record(i, 300.0 + i, seq=i) for i in range(300)])
        limit = st.used_bytes() // 2
        st.retain(max_age_s=None, max_bytes=limit)
        assert st.used_bytes() <= limit and st.count("golden") == 1
        left = [h.ts for h in st.frames_between(None, None, None, 10**6, kind="live")]
        assert left == sorted(left) and left[-1] == 599.0  # the oldest went first
        assert st._one("SELECT count(*) FROM frame_vec") == st.count()


def test_migrates_a_v1_database(tmp_path):
    path = tmp_path / "v1.db"
    c = apsw.Connection(str(path))
    import sqlite_vec
    c.enable_load_extension(True)
    c.load_extension(sqlite_vec.loadable_path())
    for sql in _V1:
        c.execute(sql)
    c.execute(f"PRAGMA application_id={APPLICATION_ID}")
    c.execute("PRAGMA user_version=1")
    c.close()
    with MemoryStore(path) as st:
        assert st.schema_version == 4
        st.create_run("r", "default", 1, 1)  # the v2 table exists
        ids = st.write_batch([record(1, 1.0)], outbox=[True])
        assert st.frame_text(ids[0]) is None  # the v3 column exists; nothing was read for this frame
        assert st.outbox_pending(10) == ids  # the v4 fleet outbox exists


def test_foreign_corrupt_and_newer_files_are_refused_clearly(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ForeignDatabase, match="not a SQLite database"):
        MemoryStore(junk)
    other = tmp_path / "other.db"
    c = apsw.Connection(str(other))
    c.execute("CREATE TABLE customers(id, name)")
    c.close()
    with pytest.raises(ForeignDatabase, match="not an edge-vla memory database"):
        MemoryStore(other)
    newer = tmp_path / "newer.db"
    MemoryStore(newer).close()
    c = apsw.Connection(str(newer))
    c.execute("PRAGMA user_version=99")
    c.close()
    with pytest.raises(NewerSchema, match="schema version 99 is newer"):
        MemoryStore(newer)
    bad = tmp_path / "bad.db"
    with MemoryStore(bad) as st:
        st.write_batch([record(i, float(i)) for i in range(50)])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(bad.read_bytes())
    data[4096 * 2:4096 * 6] = np.random.default_rng(0).integers(0, 256, 4096 * 4, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabase):
        MemoryStore(bad)


def test_full_disk_is_a_clear_write_error(tmp_path):
    vfs = QuotaVFS("quota-test", limit=400_000)
    try:
        st = MemoryStore(tmp_path / "full.db", vfs="quota-test")
        with pytest.raises(WriteFailed, match="disk full|write failed"):
            for i in range(200):
                st.write_batch([record(j, float(i * 10 + j)) for j in range(10)])
                st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        st.close()
    finally:
        vfs.unregister()
