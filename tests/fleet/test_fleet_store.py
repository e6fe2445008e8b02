"""The fleet store (qdrant-client local mode, the same code as against a server) and the sync outbox."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vla.memory.fleet import FleetStore, FleetStoreError, FleetUnavailable, open_fleet
from edge_vla.memory.golden import SimScenario, record_frames
from edge_vla.memory.regress import GoldenRun, regress_frames
from edge_vla.memory.store import MemoryStore
from edge_vla.memory.sync import FleetSync, Keyframer, expected_point_ids

from ..memory.helpers import record


def scenario(**kw):
    return SimScenario(seed=5, seconds=3.0, fps=5.0, action_times=(1.0, 2.0), **kw)


def test_golden_run_recorded_on_a_reads_the_same_on_b(tmp_path):
    """Device A records into the fleet store; device B (another client, another id) loads it: every
    vector, tile, reference thumbnail, action and time equals the local store's copy of the same run."""
    with FleetStore(str(tmp_path / "fleet"), device_id="dev-a") as a:
        res = record_frames(a, "home", scenario().frames(t0_wall=1000.0))
    assert res == {"run": "home", "frames": 15, "actions": 2}
    with MemoryStore(tmp_path / "local.db") as st:
        record_frames(st, "home", scenario().frames(t0_wall=1000.0))
        local = GoldenRun.load(st, "home")
    with FleetStore(str(tmp_path / "fleet"), device_id="dev-b") as b:
        fleet = GoldenRun.load(b, "home")
        assert b.run_info("home")["device"] == "dev-a" and b.count("golden") == 15
    assert len(fleet.frames) == len(local.frames) == 15
    for f, g in zip(fleet.frames, local.frames):
        assert f.ts == g.ts and np.allclose(f.vector, g.vector, atol=1e-6)
        assert np.array_equal(f.tiles, g.tiles) and np.array_equal(f.thumb, g.thumb)
        assert [a["type"] for a in f.actions] == [a["type"] for a in g.actions]
    # and regression against either copy says the same about a live run with a defect
    import random

    from edge_vla.sim.defects import inject_defect

    def live():
        return (fr.image for fr in scenario(at={0.5: lambda w: inject_defect(w, "missing_element", random.Random(1))})
                .frames(t0_wall=1000.0))
    r_fleet, r_local = regress_frames(fleet, live()), regress_frames(local, live())
    assert r_fleet["regressions"] > 0
    assert [s["changes"] for s in r_fleet["steps"]] == [s["changes"] for s in r_local["steps"]]


def test_run_names_are_fleet_wide(tmp_path):
    with FleetStore(":memory:", device_id="a") as fl:
        record_frames(fl, "r", scenario().frames(t0_wall=0.0))
        with pytest.raises(FleetStoreError, match="exists already"):
            record_frames(fl, "r", scenario().frames(t0_wall=0.0))
        record_frames(fl, "r", SimScenario(seed=6, seconds=1.0).frames(t0_wall=0.0), replace=True)
        assert fl.count("golden") == 5 and fl.runs() == ["r"]
        with pytest.raises(FleetStoreError, match="no golden run 'nope'.*known: r"):
            fl.run_info("nope")


def _fill(st: MemoryStore, keyframer, n: int, start: int = 0) -> None:
    """n live frames: runs of 4 identical screens, so about one in four is a keyframe."""
    recs = [record(seed=(start + i) // 4, ts=100.0 + start + i, seq=start + i) for i in range(n)]
    st.write_batch(recs, outbox=[keyframer(r) for r in recs])


def test_sync_ships_keyframes_once(tmp_path):
    kf = Keyframer(delta=0.1, max_s=1e9)
    with MemoryStore(tmp_path / "m.db") as st:
        _fill(st, kf, 40)
        queued = expected_point_ids(st, "dev")
        assert len(queued) == 10  # a steady screen is not shipped again
    sync = FleetSync(tmp_path / "m.db", lambda: FleetStore(":memory:", device_id="dev"), "dev", batch=3)
    sync.open()
    assert sync.drain()["sent"] == 10
    # nothing pending: a second pass ships nothing; ids are the expected stable ones
    assert sync.step() == 0
    assert sorted(sync.fleet.ids()) == sorted(queued.values()) and sync.fleet.count("live") == 10
    sync.close()


class Cut:
    """The fleet store's client while the network is cut: every call raises a connection error."""

    def __init__(self, client):
        self.client, self.cut = client, True

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            if self.cut and name != "close":
                raise ConnectionError("network is unreachable (test cut)")
            return attr(*a, **kw)
        return call


def test_sync_resumes_after_a_cut_and_a_crash(tmp_path):
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    cut = Cut(client)
    fleet = FleetStore("http://fleet.invalid:6333", device_id="dev", client=cut, retries=1, sleep=lambda s: None)
    kf = Keyframer(delta=0.1, max_s=1e9)
    with MemoryStore(tmp_path / "m.db") as st:
        _fill(st, kf, 40)
    sync = FleetSync(tmp_path / "m.db", lambda: fleet, "dev", batch=4)
    with pytest.raises(FleetUnavailable, match="after 2 tries"):
        sync.step()
    assert sync.store.outbox_counts() == {"pending": 10, "sent": 0} and fleet.stats_.retries >= 1
    cut.cut = False
    assert sync.step() == 4
    # a crash after the upsert, before the rows were marked sent: the resend overwrites
    with sync.store.conn:
        sync.store.conn.execute("UPDATE outbox SET sent = NULL")
    sync.drain()
    with MemoryStore(tmp_path / "m.db") as st:
        want = sorted(expected_point_ids(st, "dev").values())
        assert st.outbox_counts() == {"pending": 0, "sent": 10}
    assert sorted(fleet.ids()) == want and fleet.count() == 10


def test_backlog_is_bounded_and_golden_frames_are_never_dropped(tmp_path):
    with MemoryStore(tmp_path / "m.db") as st:
        st.create_run("g", "default", 160, 90)
        golden = [record(seed=i, ts=float(i), seq=i, kind="golden") for i in range(3)]
        for r in golden:
            r.run = "g"
        st.write_batch(golden, outbox=[True] * 3)
        live = [record(seed=100 + i, ts=10.0 + i, seq=10 + i) for i in range(20)]
        ids = st.write_batch(live, outbox=[True] * 20)
        assert st.outbox_trim(8) == 15
        left = st.outbox_pending(100)
        assert len(left) == 8 and set(ids[-5:]) <= set(left)  # the newest live frames stay
        assert st.count("golden") == 3 and len(set(left) - set(ids)) == 3


def test_keyframer():
    kf = Keyframer(delta=0.1, max_s=5.0)
    a, b = record(1, 0.0), record(1, 1.0)
    assert kf(a) and not kf(b)  # same screen
    assert kf(record(2, 2.0))  # another screen
    assert kf(record(2, 7.5))  # heartbeat on a steady screen
    assert kf(record(3, 8.0, kind="golden"))


def test_open_fleet_api_key_from_file_or_systemd_credential(tmp_path, monkeypatch):
    from edge_vla.config import MemoryConfig, fleet_api_key_path

    key = tmp_path / "key"
    key.write_text("s3cret\n")
    cfg = MemoryConfig(fleet_uri="http://127.0.0.1:9", fleet_api_key_file=key)
    assert fleet_api_key_path(cfg) == key
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "fleet-api-key").write_text("from-systemd")
    cfg2 = MemoryConfig(fleet_uri="http://127.0.0.1:9")
    assert fleet_api_key_path(cfg2, {"CREDENTIALS_DIRECTORY": str(creds)}) == creds / "fleet-api-key"
    assert fleet_api_key_path(cfg2, {}) is None
    key.write_text("")
    with pytest.raises(FleetStoreError, match="is empty"):
        open_fleet(cfg, "dev")
    with pytest.raises(FleetStoreError, match="CA file .* does not exist"):
        open_fleet(MemoryConfig(fleet_uri="https://h:6333", fleet_ca_file=tmp_path / "nope.pem"), "dev")
    with pytest.raises(FleetStoreError, match="fleet_uri is not set"):
        open_fleet(MemoryConfig(), "dev")
