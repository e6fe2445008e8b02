#!/usr/bin/env python3
"""Decision latency of a set-of-marks bundle by kind of screen change, on the simulator; prints JSON.

    tools/bench_perception.py [BUNDLE] [--width 1280 --height 720] [--n 20] [--threads 2]

For each case the runtime has already read the screen before; the time is what it takes, from the
frame it is handed, to an action: ``steady`` (the same screen again), ``local`` (an error banner
clears, a toast appears, a box is ticked) and ``new_screen`` (the next task's screen). Split into
perception and the rest (features, model, decode).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from edge_vla.config import ModelConfig, SHIPPED_MODEL
    from edge_vla.runtime.families import load_runtime
    from edge_vla.sim import SimWorld

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", default=str(SHIPPED_MODEL))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--n", type=int, default=20, help="cases per kind")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    rt = load_runtime(ModelConfig(path=Path(a.bundle), intra_threads=a.threads))
    times: dict[str, list[tuple[float, float]]] = {"steady": [], "local": [], "new_screen": []}

    def timed(kind: str, world: SimWorld) -> None:
        image = np.ascontiguousarray(world.render())
        t0 = time.perf_counter()
        _, stages = rt.infer(image, world.instruction)
        total = (time.perf_counter() - t0) * 1e3
        times[kind].append((total, stages.get("perceive", 0.0)))

    def local(world: SimWorld) -> bool:
        """Bring about one local change: the oracle's click on a checkbox or a button (a toast)."""
        step = world.oracle()
        if world.task_kind in ("checkbox", "click_button") and step.type == "click":
            world.execute(step)
            return True
        return False

    seed = 1
    while min(len(v) for v in times.values()) < a.n:
        seed += 2
        kind = ("checkbox", "click_button", "wait_then_submit")[seed % 3]
        world = SimWorld(seed=seed, width=a.width, height=a.height, task=kind)
        timed("new_screen", world)
        timed("steady", world)
        if kind == "wait_then_submit":
            before = world.version
            for _ in range(40):
                world.advance(0.1)
                if world.version != before:
                    break
            if world.version != before:  # the validation error cleared
                timed("local", world)
        elif local(world):
            timed("local", world)

    def stats(v: list[tuple[float, float]]) -> dict:
        tot, per = np.array([x[0] for x in v]), np.array([x[1] for x in v])
        return {"n": len(v), "p50_ms": round(float(np.percentile(tot, 50)), 1),
                "p95_ms": round(float(np.percentile(tot, 95)), 1),
                "perceive_p50_ms": round(float(np.percentile(per, 50)), 1)}

    print(json.dumps({"bundle": a.bundle, "resolution": f"{a.width}x{a.height}", "threads": a.threads,
                      **{k: stats(v) for k, v in times.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
