#!/usr/bin/env python
"""Crash safety of the memory database: SIGKILL the daemon during heavy ingest, N times.

Each cycle starts ``edge-vla run`` (simulator source, memory on, 10 sampled
frames/s, debug logs), waits until a few batches were flushed, kills it with
SIGKILL at a random moment, then opens the database read-write as the next
daemon would (integrity check, schema, WAL recovery) and checks: every frame
whose batch was logged as flushed is present; every frame row has its vector
row; the loss (frames acted on minus frames stored) is at most one batch plus
what was queued. Prints JSON.

    .venv/bin/python tools/memory_crash.py --cycles 20 --model /path/to/bundle
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

EDGE_VLA = str(Path(sys.executable).parent / "edge-vla")


def daemon_env(db: Path, model: Path, broker_port: int, batch: int, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
    env.update({
        "EDGE_VLA_DEVICE_ID": "crash", "EDGE_VLA_MQTT__HOST": "127.0.0.1", "EDGE_VLA_MQTT__PORT": str(broker_port),
        "EDGE_VLA_MODEL__PATH": str(model), "EDGE_VLA_SOURCE__KIND": "sim", "EDGE_VLA_SOURCE__WIDTH": "640",
        "EDGE_VLA_SOURCE__HEIGHT": "360", "EDGE_VLA_HTTP__ENABLED": "false", "EDGE_VLA_LOG__FORMAT": "json",
        "EDGE_VLA_LOG__LEVEL": "debug", "EDGE_VLA_SAMPLER__MIN_FPS": "10", "EDGE_VLA_SAMPLER__MAX_FPS": "10",
        "EDGE_VLA_MEMORY__ENABLED": "true", "EDGE_VLA_MEMORY__PATH": str(db),
        "EDGE_VLA_MEMORY__BATCH_SIZE": str(batch), "EDGE_VLA_MEMORY__FLUSH_INTERVAL_S": "1.0",
        **(extra or {}),
    })
    return env


def logs(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def one_cycle(workdir: Path, db: Path, model: Path, broker_port: int, batch: int, rng: random.Random,
              min_flushes: int = 2) -> dict:
    from edge_vla.memory.store import MemoryStore

    err = workdir / f"daemon-{time.time_ns()}.log"
    before = 0
    if db.exists():
        with MemoryStore(db) as st:
            before = st.count()
    proc = subprocess.Popen([EDGE_VLA, "run"], env=daemon_env(db, model, broker_port, batch),
                            stdout=subprocess.DEVNULL, stderr=open(err, "wb"))
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if sum(1 for e in logs(err) if e.get("event") == "memory.flushed") >= min_flushes:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited early: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"no flushes: {err.read_text()[-2000:]}")
    time.sleep(rng.uniform(0, 1.0))  # anywhere inside a batch
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    events = logs(err)
    flushed = [e for e in events if e.get("event") == "memory.flushed"]
    committed = flushed[-1]["total"] if flushed else 0
    acted = sum(1 for e in events if e.get("event") == "action.sent")
    t0 = time.perf_counter()
    with MemoryStore(db) as st:  # what the next daemon does: checks, WAL recovery
        open_ms = (time.perf_counter() - t0) * 1e3
        stored = st.count() - before
        vec_rows = st._one("SELECT count(*) FROM frame_vec")
        consistent = vec_rows == st.count()
        integrity = st._one("PRAGMA integrity_check")
    return {"committed_logged": committed, "stored": stored, "acted": acted,
            "lost": max(0, acted - stored), "lost_committed": max(0, committed - stored),
            "consistent": consistent, "integrity": integrity, "open_ms": round(open_ms, 1)}


def run_cycles(n: int, model: Path, workdir: Path, batch: int = 16, seed: int = 0) -> dict:
    from edge_vla.broker import Mosquitto

    rng = random.Random(seed)
    db = workdir / "crash.db"
    cycles = []
    with Mosquitto(workdir=workdir) as broker:
        for _ in range(n):
            cycles.append(one_cycle(workdir, db, model, broker.port, batch, rng))
    return {
        "cycles": n, "batch_size": batch,
        "opened_cleanly": sum(1 for c in cycles if c["integrity"] == "ok" and c["consistent"]),
        "lost_committed_max": max(c["lost_committed"] for c in cycles),
        "lost_frames_max": max(c["lost"] for c in cycles),
        "lost_frames_mean": round(sum(c["lost"] for c in cycles) / n, 2),
        "open_ms_max": max(c["open_ms"] for c in cycles),
        "detail": cycles,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model", help="model bundle (default: build a tiny random one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from edge_vla.runtime.heads import build_heads_bundle

            model = build_heads_bundle(Path(tmp) / "tiny", seed=1)
        print(json.dumps(run_cycles(args.cycles, model, Path(tmp), args.batch), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
