#!/usr/bin/env python3
"""Load and soak: N WHIP publishers against one `edge-vla run`, JSON report on stdout.

    tools/webrtc_load.py --streams 4 --seconds 120            # load: 4 x 640x480@30
    tools/webrtc_load.py --streams 1 --seconds 1800 --window 300   # 30-minute soak

Everything is real and on loopback: a private mosquitto, the daemon as a
subprocess (source.kind=webrtc, the shipped model unless --model), one
publisher process per stream streaming the UI simulator with a pixel timecode
and executing the actions it gets back, and an MQTT subscriber that measures
glass-to-action (capture time drawn in the frame -> action received through the
broker). Reported: actions/s and latency per stream, daemon RSS over time,
latency in the first vs the last window, and the daemon's error counters.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from edge_vla.broker import Mosquitto, free_port
from edge_vla.latency import summarize

EDGE_VLA = str(Path(sys.executable).parent / "edge-vla")
DEVICE = "load"


def pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    s = summarize(values)
    return {"n": s["n"], "p50": round(s["p50"], 2), "p95": round(s["p95"], 2)}


def metrics(port: int) -> dict[str, float]:
    """The daemon's counters summed over streams (``edge_vla_x_total``)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("edge_vla_") and "_total" in line.split(" ")[0]:
                name = line.split("{")[0].split(" ")[0].removesuffix("_total")
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--window", type=float, default=None, help="first/last window length (default: a third)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    ap.add_argument("--model", help="model bundle (default: the shipped one)")
    args = ap.parse_args()
    window = args.window or args.seconds / 3
    work = Path(tempfile.mkdtemp(prefix="edge-vla-load-"))
    received: list[tuple[str, float, float]] = []  # stream, monotonic arrival, glass-to-action ms
    lock = threading.Lock()

    with Mosquitto(workdir=work) as broker:
        http_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_VLA_")}
        env.update({"EDGE_VLA_DEVICE_ID": DEVICE, "EDGE_VLA_MQTT__HOST": "127.0.0.1",
                    "EDGE_VLA_MQTT__PORT": str(broker.port), "EDGE_VLA_SOURCE__KIND": "webrtc",
                    "EDGE_VLA_HTTP__PORT": str(http_port), "EDGE_VLA_WEBRTC__HOST_ADDRESSES": '["127.0.0.1"]',
                    "EDGE_VLA_WEBRTC__READ_TIMECODE": "true", "EDGE_VLA_WEBRTC__MAX_PEERS": str(args.streams),
                    "EDGE_VLA_LOG__FORMAT": "json", "EDGE_VLA_LOG__LEVEL": "warning"})
        if args.model:
            env["EDGE_VLA_MODEL__PATH"] = args.model
        daemon = subprocess.Popen([EDGE_VLA, "run"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(work / "daemon.log", "wb"))
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)

        def on_message(_c, _u, msg):
            data = json.loads(msg.payload)
            with lock:
                received.append((data["stream"], time.monotonic(), (time.time() - data["frame_ts"]) * 1e3))

        sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        sub.on_message = on_message
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe(f"edge-vla/{DEVICE}/+/action", qos=1)
        sub.loop_start()

        t0 = time.monotonic()
        pubs = [subprocess.Popen(
            [sys.executable, "-m", "edge_vla.publisher", f"http://127.0.0.1:{http_port}/whip/s{i}",
             "--source", "sim", "--seed", str(i), "--width", str(args.width), "--height", str(args.height),
             "--fps", str(args.fps), "--codec", args.codec, "--seconds", str(args.seconds), "--execute",
             "--quiet", "--host-address", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=open(work / f"pub{i}.log", "wb")) for i in range(args.streams)]
        proc = psutil.Process(daemon.pid)
        rss: list[tuple[float, float]] = []
        cpu0 = proc.cpu_times()
        while time.monotonic() - t0 < args.seconds:
            rss.append((round(time.monotonic() - t0, 1), round(proc.memory_info().rss / 2**20, 1)))
            time.sleep(min(5.0, max(0.5, args.seconds / 60)))
        cpu1 = proc.cpu_times()
        counters = metrics(http_port)
        summaries = []
        for p in pubs:
            out, _ = p.communicate(timeout=30)
            lines = out.decode().strip().splitlines()
            summaries.append(json.loads(lines[-1])["summary"] if lines else None)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(20)
        sub.loop_stop()

    elapsed = time.monotonic() - t0
    per_stream = {}
    for i in range(args.streams):
        name = f"s{i}"
        vals = [g for s, _, g in received if s == name]
        per_stream[name] = {"actions": len(vals), "actions_per_s": round(len(vals) / args.seconds, 2),
                            "glass_to_action_ms": pct(vals)}
    first = [g for _, t, g in received if t - t0 < window]
    last = [g for _, t, g in received if t - t0 >= args.seconds - window]
    warm = [m for t, m in rss if t >= min(10.0, args.seconds / 4)]
    report = {
        "streams": args.streams, "seconds": round(elapsed, 1), "size": f"{args.width}x{args.height}@{args.fps:g}",
        "codec": args.codec, "per_stream": per_stream,
        "all_streams_glass_to_action_ms": pct([g for _, _, g in received]),
        "first_window_ms": pct(first), "last_window_ms": pct(last), "window_s": window,
        "rss_mb": {"start": warm[0] if warm else None, "end": rss[-1][1] if rss else None,
                   "max": max(m for _, m in rss) if rss else None, "samples": rss},
        "daemon_cpu_percent_of_one_core": round(100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))
                                                / args.seconds, 1),
        "errors": {k: counters.get(f"edge_vla_{k}", 0.0) for k in
                   ("policy_errors", "policy_timeouts", "decode_errors", "frames_bad", "source_errors")},
        "publishers": summaries, "daemon_exit": code, "logs": str(work),
    }
    print(json.dumps(report, indent=2))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
