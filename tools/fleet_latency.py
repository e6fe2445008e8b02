#!/usr/bin/env python
"""Glass-to-action with the fleet sync on vs off, side by side in one run (JSON on stdout).

The daemon runs on the simulator with memory on (the same ingest both ways); "on" adds
``memory.fleet_uri`` (qdrant-client local mode in a folder: the sync thread ships keyframes while
the loop runs). Rounds alternate off/on so drift of a busy machine hits both. Also reports what
went to the fleet store and to the broker per second (payload bytes): the per-device figures in
docs/fleet.md.

    PYTHONPATH=. .venv/bin/python tools/fleet_latency.py --rounds 2 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_vla import harness, log  # noqa: E402
from edge_vla.config import load_settings  # noqa: E402


def one(seconds: float, memory: dict, fps: float, broker_bytes: list, policy: str | None) -> dict:
    extra = {"policy": {"kind": policy}} if policy else {}
    s = load_settings(environ={}, device_id="lat-dev", source={"kind": "sim", "fps": fps},
                      http={"enabled": False}, log={"format": "json", "level": "warning"}, memory=memory, **extra)
    s = harness.with_free_http_port(s)
    with harness.private_broker(s) as s2:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        counter = {"bytes": 0, "msgs": 0}
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="lat-bytes", protocol=paho.MQTTv5)

        def on_msg(_c, _u, m):
            counter["bytes"] += len(m.payload) + len(m.topic)
            counter["msgs"] += 1
        c.on_message = on_msg
        c.on_connect = lambda cl, *a: cl.subscribe("edge-vla/#", qos=1)
        c.connect("127.0.0.1", s2.mqtt.port)
        c.loop_start()
        obs = asyncio.run(harness.observe(s2, seconds))
        c.loop_stop()
        c.disconnect()
    rep = harness.report(obs)
    mem = obs.daemon.memory
    out = {"glass_to_action_p50_ms": rep["latency_ms"].get("glass_to_action", {}).get("p50"),
           "glass_to_action_p95_ms": rep["latency_ms"].get("glass_to_action", {}).get("p95"),
           "actions": rep["actions_received"], "seconds": rep["seconds"],
           "frames_written": mem.ingest.stats.written, "keyframes": mem.ingest.stats.keyframes,
           "broker_bytes_per_s": round(counter["bytes"] / rep["seconds"], 1),
           "broker_msgs_per_s": round(counter["msgs"] / rep["seconds"], 2),
           "samples": obs.glass_to_action}
    if mem.sync is not None:
        out["fleet"] = mem.sync.summary()
        out["fleet_bytes_per_s"] = round(mem.sync.stats.bytes_sent / rep["seconds"], 1)
    broker_bytes.append(out["broker_bytes_per_s"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--policy", default="oracle", help="policy.kind ('oracle': the simulator's own answer, so the "
                    "loop acts often and the sample is large; 'onnx': the shipped model)")
    args = ap.parse_args()
    log.configure("warning", "json")
    tmp = Path(tempfile.mkdtemp(prefix="fleet-lat-"))
    rows = {"off": [], "on": []}
    bb: list = []
    for r in range(args.rounds):
        for mode in ("off", "on"):
            memory = {"enabled": True, "path": str(tmp / f"{mode}{r}.db")}
            if mode == "on":
                memory["fleet_uri"] = str(tmp / f"fleet{r}")
            rows[mode].append(one(args.seconds, memory, args.fps, bb, args.policy))
    # pooled over the rounds: every action's glass-to-action, per mode
    pooled = {m: [x for r in v for x in r.pop("samples")] for m, v in rows.items()}
    p50 = {m: statistics.median(v) for m, v in pooled.items()}
    print(json.dumps({"policy": args.policy, "p50_off_ms": round(p50["off"], 2), "p50_on_ms": round(p50["on"], 2),
                      "on_vs_off": round(p50["on"] / p50["off"] - 1, 4),
                      "actions": {m: len(v) for m, v in pooled.items()}, "rounds": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
