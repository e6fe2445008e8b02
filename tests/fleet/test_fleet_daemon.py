"""`edge-vla run` with a fleet store, as a subprocess against a real mosquitto: keyframes reach the
fleet store while the daemon acts; an unreachable fleet store is reported and never stops the actions."""

from __future__ import annotations

import json

from edge_vla.memory.fleet import FleetStore
from edge_vla.memory.store import MemoryStore
from edge_vla.memory.sync import expected_point_ids

from ..memory.test_memory_daemon import DEVICE, actions, events, start, stop


def test_daemon_ships_keyframes_to_the_fleet_store(tmp_path, broker, collector, tiny_bundle):
    db, fleet = tmp_path / "m.db", tmp_path / "fleet"
    proc, err = start(tmp_path, broker, tiny_bundle, db, EDGE_VLA_MEMORY__FLEET_URI=str(fleet))
    try:
        assert collector.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/action")]) >= 5, 60), \
            err.read_text()[-3000:]
        # give the sync a few polls after the last flush
        collector.wait_for(lambda ms: False, 3.0)
    finally:
        assert stop(proc) == 0
    with MemoryStore(db) as st:
        counts = st.outbox_counts()
        want = expected_point_ids(st, DEVICE)
        sent = {fid for (fid,) in st.conn.execute("SELECT frame_id FROM outbox WHERE sent IS NOT NULL")}
        frames = st.count()
    assert counts["sent"] >= 1 and len(want) < frames  # keyframes only, not every sampled frame
    with FleetStore(str(fleet), device_id="checker") as fl:
        got = sorted(fl.ids(device=DEVICE))
    assert got == sorted(want[f] for f in sent)  # every acknowledged keyframe, each once


def test_unreachable_fleet_store_never_stops_the_actions(tmp_path, broker, collector, tiny_bundle):
    db = tmp_path / "m.db"
    proc, err = start(tmp_path, broker, tiny_bundle, db, EDGE_VLA_MEMORY__FLEET_URI="http://127.0.0.1:9",
                      EDGE_VLA_MEMORY__FLEET_TIMEOUT_S="1", EDGE_VLA_MEMORY__FLEET_RETRIES="0")
    try:
        assert collector.wait_for(lambda ms: any(m.topic.endswith("/events") and
                                                 json.loads(m.payload).get("kind") == "fleet_unavailable"
                                                 for m in ms), 60), err.read_text()[-3000:]
        n = len(actions(collector))
        assert collector.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/action")]) >= n + 5, 60)
    finally:
        assert stop(proc) == 0
    ev = events(collector, "fleet_unavailable")[0]
    assert "127.0.0.1:9" in ev["uri"]
    with MemoryStore(db) as st:
        assert st.outbox_counts()["pending"] >= 1 and st.outbox_counts()["sent"] == 0
