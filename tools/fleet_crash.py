#!/usr/bin/env python
"""Sync under faults: SIGKILL the syncing process mid-sync N times, then cut the fleet store for
``--cut-s`` seconds, then check that the fleet store holds every queued keyframe exactly once.

The fleet store is qdrant-client's local mode (a folder; no server can be installed here), so the
cut is simulated: the child wraps the client so every call raises ConnectionError for ``--cut-s``
seconds (what an unreachable server looks like to FleetStore), then lets calls through again.
New frames are written to the local database between kills, so each restart has fresh work.

    PYTHONPATH=. .venv/bin/python tools/fleet_crash.py --kills 10 --cut-s 30 > crash.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_vla.memory.embed import GridEmbedder  # noqa: E402
from edge_vla.memory.fleet import FleetStore  # noqa: E402
from edge_vla.memory.store import FrameRecord, MemoryStore  # noqa: E402
from edge_vla.memory.sync import FleetSync, Keyframer, expected_point_ids  # noqa: E402

DEVICE = "crash-dev"


class Cut:
    """The fleet client during a network cut: every call raises ConnectionError until ``until``."""

    def __init__(self, client, until: float):
        self.client, self.until, self.refused = client, until, 0

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*a, **kw):
            if time.monotonic() < self.until:
                self.refused += 1
                raise ConnectionError("fleet store unreachable (simulated cut)")
            return attr(*a, **kw)
        return call


def child(args) -> int:
    """The syncing process: the same FleetSync thread the daemon runs."""
    cut_until = time.monotonic() + args.cut_s
    holder = {}

    def open_store():
        fl = FleetStore(args.fleet, device_id=DEVICE, retries=1, sleep=lambda s: time.sleep(min(s, 0.05)))
        if args.cut_s > 0:
            holder["cut"] = fl.client = Cut(fl.client, cut_until)
        return fl

    sync = FleetSync(args.db, open_store, DEVICE, batch=args.batch, backoff_max_s=2.0, poll_s=0.1)
    sync.start()
    print("started", flush=True)
    while True:
        time.sleep(0.2)
        if args.cut_s > 0 and time.monotonic() > cut_until and sync.stats.pending == 0 and sync.stats.sent \
                and sync.stats.state == "ok":
            sync.stop()
            print(json.dumps({**sync.summary(), "refused_calls": holder["cut"].refused}), flush=True)
            return 0


def add_frames(db: Path, n: int, start: int, kf: Keyframer) -> None:
    """n simulator frames at 5 fps: a new seeded screen every 10 frames (oracle actions between),
    so each round brings a few dozen keyframes among many steady frames."""
    from edge_vla.memory.golden import SimScenario

    emb = GridEmbedder()
    with MemoryStore(db) as st:
        recs = []
        for j in range(0, n, 10):
            sc = SimScenario(seed=start + j, width=640, height=360, seconds=2.0, fps=5.0, action_times=(1.0,))
            for k, f in enumerate(sc.frames(t0_wall=1e9 + start + j)):
                h, w = f.image.shape[:2]
                recs.append(FrameRecord(stream="default", seq=start + j + k, ts=f.ts, width=w, height=h,
                                        embedding=emb.embed(f.image), thumb=b"j" * 6000, thumb_size=(160, 90)))
        st.write_batch(recs, outbox=[kf(r) for r in recs])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="parent", choices=["parent", "child"])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--cut-s", type=float, default=30.0)
    ap.add_argument("--frames-per-round", type=int, default=150)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--db")
    ap.add_argument("--fleet")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.mode == "child":
        return child(args)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="fleet-crash-"))
    db, fleet = tmp / "local.db", tmp / "fleet"
    kf = Keyframer(delta=0.12, max_s=60.0)
    env = dict(os.environ)
    cmd = [sys.executable, __file__, "child", "--db", str(db), "--fleet", str(fleet), "--batch", str(args.batch)]
    kills, progress = [], []
    for i in range(args.kills):
        add_frames(db, args.frames_per_round, i * 1000, kf)
        p = subprocess.Popen(cmd + ["--cut-s", "0"], stdout=subprocess.PIPE, env=env, text=True)
        p.stdout.readline()  # "started"
        with MemoryStore(db) as st:
            before = st.outbox_counts()
        # kill mid-sync: once this process has had at least one batch acknowledged, at a random
        # moment within the next 0.3 s (between batches or inside an upsert)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with MemoryStore(db) as st:
                if st.outbox_counts()["sent"] > before["sent"]:
                    break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        with MemoryStore(db) as st:
            mid = st.outbox_counts()
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills.append({"round": i, "pending_before": before["pending"], "sent_before": before["sent"],
                      "sent_at_kill": mid["sent"], "pending_at_kill": mid["pending"]})
    add_frames(db, args.frames_per_round, 99_000, kf)
    t0 = time.monotonic()
    p = subprocess.run(cmd + ["--cut-s", str(args.cut_s)], capture_output=True, env=env, text=True, timeout=600)
    final = json.loads(p.stdout.strip().splitlines()[-1])
    with MemoryStore(db) as st:
        want = expected_point_ids(st, DEVICE)
        counts = st.outbox_counts()
        frames = st.count()
    with FleetStore(str(fleet), device_id="checker") as fl:
        got = fl.ids()
        n = fl.count()
        local_ids = [pt.payload["local_id"] for pt in fl.scroll(payload=["local_id"])]
    out = {
        "kills": len(kills), "killed_mid_sync": sum(1 for k in kills if k["pending_at_kill"] > 0 and k["sent_at_kill"] > k["sent_before"]),
        "cut_s": args.cut_s, "cut_phase": {**final, "wall_s": round(time.monotonic() - t0, 1)},
        "local_frames": frames, "keyframes_queued": len(want), "outbox": counts,
        "fleet_points": n, "fleet_ids_equal_expected": sorted(got) == sorted(want.values()),
        "duplicate_local_ids_in_fleet": len(local_ids) - len(set(local_ids)),
        "exactly_once": n == len(want) and sorted(got) == sorted(want.values()) and len(local_ids) == len(set(local_ids)),
        "rounds": kills,
    }
    print(json.dumps(out, indent=1))
    return 0 if out["exactly_once"] and counts["pending"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
