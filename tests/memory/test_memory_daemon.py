"""`edge-vla run` with memory on, as a subprocess against a real mosquitto.

Ingest while acting, regression events against a golden run, and bad input:
a corrupt file, a database from a newer schema, a full disk (a per-process file
size limit, RLIMIT_FSIZE: writes past it fail with EFBIG). In every bad case
memory is disabled with a ``memory_disabled`` event and the actions go on.
SIGKILL during heavy ingest runs 3 cycles here; tools/memory_crash.py runs 20.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from edge_vla.memory.store import MemoryStore

from ..conftest import EDGE_VLA

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import memory_crash  # noqa: E402

DEVICE = "crash"  # memory_crash.daemon_env's device id


def start(tmp_path, broker, model, db, fsize: int | None = None, **extra):
    env = memory_crash.daemon_env(db, model, broker.port, batch=8,
                                  extra={"EDGE_VLA_LOG__LEVEL": "info", **extra})

    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    err = tmp_path / f"daemon-{db.name}.log"
    proc = subprocess.Popen([EDGE_VLA, "run"], env=env, stdout=subprocess.DEVNULL, stderr=open(err, "wb"),
                            preexec_fn=limit)
    return proc, err


def actions(collector):
    return collector.on(f"{DEVICE}/default/action")


def events(collector, kind):
    out = []
    for m in collector.on(f"{DEVICE}/events"):
        data = json.loads(m.payload)
        if data.get("kind") == kind:
            out.append(data)
    return out


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


def test_ingests_while_acting_and_publishes_regressions(tmp_path, broker, collector, tiny_bundle):
    db = tmp_path / "mem.db"
    rc = subprocess.run([EDGE_VLA, "memory", "record", "other-screen", "--sim", "--db", str(db), "--seed", "5",
                         "--width", "640", "--height", "360", "--seconds", "2", "--actions", ""],
                        capture_output=True, text=True, timeout=60)
    assert rc.returncode == 0, rc.stderr
    proc, err = start(tmp_path, broker, tiny_bundle, db, EDGE_VLA_MEMORY__REGRESS="other-screen")
    try:
        assert collector.wait_for(lambda m: len(events(collector, "regression")) >= 1, 30), err.read_text()[-3000:]
        assert collector.wait_for(lambda m: len(actions(collector)) >= 10, 20)
        ev = events(collector, "regression")[0]
        assert ev["run"] == "other-screen" and ev["changes"] and all(len(c["box"]) == 4 for c in ev["changes"])
        assert all(0 <= v <= 1000 for c in ev["changes"] for v in c["box"])
        assert stop(proc) == 0
    finally:
        proc.kill()
    with MemoryStore(db, readonly=True) as st:
        s = st.stats()
        assert s["frames"] - s["golden_frames"] >= 10 and s["actions"] >= 5
    out = subprocess.run([EDGE_VLA, "memory", "query", "--db", str(db), "--from", "-600", "--kind", "live", "-k", "3"],
                         capture_output=True, text=True, timeout=30)
    hits = json.loads(out.stdout)["hits"]
    assert out.returncode == 0 and len(hits) == 3 and all(h["kind"] == "live" for h in hits)


def _corrupt(db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)


def _newer(db: Path) -> None:
    MemoryStore(db).close()
    c = apsw.Connection(str(db))
    c.execute("PRAGMA user_version=42")
    c.close()


@pytest.mark.parametrize("damage,expect", [(_corrupt, "Database"), (_newer, "NewerSchema"), (None, "WriteFailed")],
                         ids=["corrupt", "newer-schema", "full-disk"])
def test_bad_database_disables_memory_and_keeps_acting(tmp_path, broker, collector, tiny_bundle, damage, expect):
    db = tmp_path / "mem.db"
    if damage is not None:
        damage(db)
        proc, err = start(tmp_path, broker, tiny_bundle, db)
    else:  # full disk: files of this process cannot grow past 1.5 MB; big thumbnails fill it fast
        proc, err = start(tmp_path, broker, tiny_bundle, db, fsize=1_500_000,
                          EDGE_VLA_MEMORY__THUMB_WIDTH="640", EDGE_VLA_MEMORY__BATCH_SIZE="4")
    try:
        assert collector.wait_for(lambda m: len(events(collector, "memory_disabled")) >= 1, 40), err.read_text()[-3000:]
        ev = events(collector, "memory_disabled")[0]
        assert expect in ev["error_type"] and str(db) in ev["path"] and ev["reason"]
        n = len(actions(collector))
        assert collector.wait_for(lambda m: len(actions(collector)) >= n + 5, 20), "actions stopped"
        logged = [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]
        assert any(e.get("event") == "memory.disabled" and e.get("level") == "error" for e in logged)
        assert proc.poll() is None
        assert stop(proc) == 0
    finally:
        proc.kill()


def test_sigkill_during_heavy_ingest_loses_at_most_a_batch(tmp_path, tiny_bundle):
    res = memory_crash.run_cycles(3, tiny_bundle, tmp_path, batch=8)
    assert res["opened_cleanly"] == 3, res
    assert res["lost_committed_max"] == 0, res
    assert res["lost_frames_max"] <= 8 + 4, res  # one batch, plus frames still being embedded
