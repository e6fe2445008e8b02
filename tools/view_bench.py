#!/usr/bin/env python3
"""Does the live view slow the action loop? Glass-to-action with and without a viewer, in one run.

    tools/view_bench.py                       # 4 rounds of 20 s without / with a viewer, then the rest
    tools/view_bench.py --segment 30 --rounds 6 --json /work/runs/view_bench.json

One daemon in-process (the simulator, the shipped model, a private mosquitto, glass-to-action
measured by a separate MQTT subscriber, as ``edge-vla bench`` does). Phases:
1. A/B: segments without and with one viewer (a separate process that watches the stream and reads
   every picture), alternating (none, viewer, viewer, none, ...) so that drift hits both alike;
2. the daemon's RSS with a viewer that stops reading (its socket is never read again; the heartbeat
   is turned off so it stays), then as long with nobody watching (the control), sampled every
   second, with the least-squares trend of each and the stalled viewer's slot counters;
3. 50 viewers connect, watch and leave: asyncio tasks and open sockets before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- viewer processes ----------------------------------------------------------------------------

async def run_viewer(url: str) -> None:
    """A reading viewer: watch the stream, take every picture, count them; print the count on SIGTERM."""
    import signal

    import aiohttp

    counts = {"pictures": 0, "bytes": 0, "messages": 0}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            await ws.send_json({"op": "watch", "stream": "default"})

            async def read():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        counts["pictures"] += 1
                        counts["bytes"] += len(msg.data)
                    else:
                        counts["messages"] += 1
            reader = asyncio.create_task(read())
            await stop.wait()
            reader.cancel()
    print(json.dumps(counts), flush=True)


def stalled_viewer(port: int) -> None:
    """Connect, ask for pictures, never read again (a hung tab, a dead client that keeps its socket)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /view/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    payload = json.dumps({"op": "watch", "stream": "default"}).encode()
    mask = b"\x01\x02\x03\x04"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    time.sleep(3600)


# -- the benchmark -------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, p)), 1)


def slope_per_min(samples: list[float]) -> float:
    """Least-squares trend of once-a-second samples, per minute (RSS wobbles by a few MB either way)."""
    import numpy as np

    return round(float(np.polyfit(np.arange(len(samples)), samples, 1)[0]) * 60, 2) if len(samples) > 1 else 0.0


def open_sockets(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if ((c.laddr and c.laddr.port == port) or (c.raddr and c.raddr.port == port))
               and c.status not in (psutil.CONN_LISTEN, psutil.CONN_TIME_WAIT))


async def bench(args) -> dict:
    from edge_vla import harness, log
    from edge_vla.config import load_settings
    from edge_vla.http import view

    view.HEARTBEAT_S = 3600.0  # phase 2 wants the stalled viewer to stay; the default closes it in ~15 s
    log.configure("warning", "json")
    settings = load_settings(source={"kind": "sim", "width": args.width, "height": args.height})
    settings = harness.with_free_http_port(settings)
    port = settings.http.port
    url = f"ws://127.0.0.1:{port}/view/ws"
    segments = [("none", "viewer") if r % 2 == 0 else ("viewer", "none") for r in range(args.rounds)]
    segments = [label for pair in segments for label in pair]
    total = args.warmup + len(segments) * args.segment + 2 * args.stall + 25
    label = {"now": "warmup"}
    samples: dict[str, list[tuple[float, float]]] = {}
    ref: dict = {}

    def on_action(data: dict, g2a: float) -> None:
        lat = data["latency_ms"]
        samples.setdefault(label["now"], []).append((g2a, lat.get("policy", 0.0)))

    async def drive() -> dict:
        out: dict = {"viewer_client": {}, "stall": {}, "many": {}}
        while "daemon" not in ref or ref["daemon"].view is None:
            await asyncio.sleep(0.1)
        daemon = ref["daemon"]
        await asyncio.sleep(args.warmup)
        proc = psutil.Process()
        cpu: dict[str, float] = {}
        for seg in segments:
            viewer = None
            if seg == "viewer":
                viewer = await asyncio.create_subprocess_exec(sys.executable, __file__, "--viewer", url,
                                                              stdout=subprocess.PIPE)
            label["now"] = seg
            t0, c0 = time.monotonic(), proc.cpu_times()
            await asyncio.sleep(args.segment)
            c1 = proc.cpu_times()
            cpu[seg] = cpu.get(seg, 0.0) + (c1.user + c1.system - c0.user - c0.system)
            label["now"] = "between"
            if viewer is not None:
                viewer.terminate()
                got = json.loads((await viewer.communicate())[0] or b"{}")
                for k, v in got.items():
                    out["viewer_client"][k] = out["viewer_client"].get(k, 0) + v
        seconds = args.segment * args.rounds
        out["cpu_percent_of_one_core"] = {k: round(100 * v / seconds, 1) for k, v in cpu.items()} if seconds else {}
        out["frames_encoded"] = daemon.view.frames_encoded
        label["now"] = "stalled"
        stalled = subprocess.Popen([sys.executable, __file__, "--stalled", str(port)])
        rss = []
        for _ in range(int(args.stall)):
            await asyncio.sleep(1)
            rss.append(round(proc.memory_info().rss / 2**20, 1))
        viewers = list(daemon.view.viewers)
        out["stall"] = {
            "rss_mb": rss, "rss_first_mb": rss[0], "rss_last_mb": rss[-1], "rss_max_mb": max(rss),
            "rss_min_mb": min(rss), "rss_slope_mb_per_min": slope_per_min(rss),
            "viewer": [{"frames_sent": v.frames_sent, "frames_replaced": v.frames_replaced,
                        "messages_waiting": len(v.messages), "picture_waiting": v.frame is not None}
                       for v in viewers],
        }
        stalled.kill()
        stalled.wait()
        # the control: the same length with nobody watching (after the stall, so both are warmed up)
        label["now"] = "control"
        await asyncio.sleep(2)
        control = []
        for _ in range(int(args.stall)):
            await asyncio.sleep(1)
            control.append(round(proc.memory_info().rss / 2**20, 1))
        out["control"] = {"rss_first_mb": control[0], "rss_last_mb": control[-1], "rss_min_mb": min(control),
                          "rss_max_mb": max(control), "rss_slope_mb_per_min": slope_per_min(control)}
        label["now"] = "after"
        await asyncio.sleep(2)
        # phase 3: 50 viewers come and go
        import aiohttp

        tasks_before = len(asyncio.all_tasks())
        sockets_before = open_sockets(port)
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(url) for _ in range(args.viewers)]
            for ws in sockets:
                await ws.send_json({"op": "watch", "stream": "default"})
            await asyncio.sleep(3)
            during = {"viewers": len(daemon.view.viewers), "tasks": len(asyncio.all_tasks()),
                      "sockets": open_sockets(port)}
            for ws in sockets[::2]:
                await ws.close()
        await asyncio.sleep(2)
        out["many"] = {"viewers": args.viewers, "during": during,
                       "before": {"tasks": tasks_before, "sockets": sockets_before},
                       "after": {"viewers": len(daemon.view.viewers), "tasks": len(asyncio.all_tasks()),
                                 "sockets": open_sockets(port), "watching": dict(daemon.view._watching)}}
        return out

    with harness.private_broker(settings) as s:
        driver = asyncio.create_task(drive())
        obs = await harness.observe(s, total, on_action=on_action, on_daemon=lambda d: ref.setdefault("daemon", d))
        phases = await driver
    result = {"machine": {"cpus": os.cpu_count()}, "settings": {"width": args.width, "height": args.height,
              "segment_s": args.segment, "rounds": args.rounds, "model": settings.model.path.name},
              "actions_total": len(obs.actions)}
    for cond in ("none", "viewer", "stalled"):
        g = [x[0] for x in samples.get(cond, [])]
        m = [x[1] for x in samples.get(cond, [])]
        result[cond] = {"n": len(g), "glass_to_action_p50": pct(g, 50), "glass_to_action_p95": pct(g, 95),
                        "policy_p50": pct(m, 50), "policy_p95": pct(m, 95),
                        "actions_per_s": round(len(g) / (args.segment * args.rounds or 1), 2)
                        if cond != "stalled" else round(len(g) / args.stall, 2)}
    none, one = result["none"], result["viewer"]
    if none["n"] and one["n"]:
        result["viewer_vs_none"] = {k: round(one[k] / none[k] - 1, 3) for k in
                                    ("glass_to_action_p50", "glass_to_action_p95")}
    result.update(phases)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--segment", type=float, default=20.0, help="seconds per segment")
    p.add_argument("--rounds", type=int, default=4, help="pairs of segments (none + viewer)")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--stall", type=float, default=40.0, help="seconds the stalled viewer is watched")
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--viewer", help=argparse.SUPPRESS)
    p.add_argument("--stalled", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.viewer:
        asyncio.run(run_viewer(args.viewer))
        return 0
    if args.stalled:
        stalled_viewer(args.stalled)
        return 0
    result = asyncio.run(bench(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
