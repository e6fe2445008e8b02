#!/usr/bin/env python
"""Visual regression benchmark on the UI simulator (JSON on stdout).

For each screen (a seeded world and task): record a golden run into a real
sqlite-vec memory database, then replay the screen live with benign variation
(blinking caret, a ticking clock in the header, other live chart data, JPEG
noise of random quality, shifted frame phase and action times) and, in separate
runs, with one injected defect. Reports recall per defect kind, false alarms per
1,000 benign frames and localisation (IoU >= 0.5 of a reported box with the
defect's truth box). ``--read`` records each golden frame's text lines and compares what
the live lines say too (``memory.textdiff``); run it with and without to see what reading adds.

    .venv/bin/python tools/regression_bench.py --per-kind 20 --benign-screens 36 [--read] [--kinds changed_label] > bench.json

``--store fleet``: each golden run is recorded by "device A" into the fleet store (qdrant-client local
mode in a folder, through FleetStore: the code that talks to a server) and read back by "device B"
(another client, another device id) for the regression; run it with ``--store local`` for the side by side.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_vla.memory.golden import SimScenario, record_frames  # noqa: E402
from edge_vla.memory.regress import GoldenRun, LiveRegressor, Params  # noqa: E402
from edge_vla.memory.store import MemoryStore  # noqa: E402
from edge_vla.sim import TASK_KINDS  # noqa: E402
from edge_vla.sim.defects import DEFECTS, Clock, compress, focus_field, hide_dialog, inject_defect, reseed_charts  # noqa: E402

CHART_TASK = "dismiss_popup_then_buy"


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def norm_box(box, w, h):
    return (box[0] * 1000 / w, box[1] * 1000 / h, box[2] * 1000 / w, box[3] * 1000 / h)


def scenario(seed, task, args, live: bool, rng: random.Random | None = None, edits=None) -> SimScenario:
    clock_start = 36000 + seed * 7 if not live else (36000 + seed * 7 + rng.randint(60, 20000))

    def setup(world):
        hide_dialog(world)
        Clock(world, clock_start)
        focus_field(world)
        if live:
            reseed_charts(world, rng.randint(0, 2**31))

    times = (2.0, 4.0)
    phase = 0.0
    post = None
    if live:
        times = tuple(t + rng.uniform(-0.3, 0.3) for t in times)
        phase = rng.uniform(0, 1 / args.fps)
        q = rng.randint(40, 90)
        post = lambda img: compress(img, q)  # noqa: E731
    return SimScenario(seed=seed, width=args.width, height=args.height, task=task, seconds=args.seconds,
                       fps=args.fps, action_times=times, phase=phase, setup=setup, at=edits or {}, post=post)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=20, help="defect instances per kind")
    ap.add_argument("--benign-screens", type=int, default=36, help="benign live runs (one per screen)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--inject-at", type=float, default=0.5, help="sim seconds into the live run")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--db", help="memory database (default: a temporary file)")
    ap.add_argument("--threshold", type=float, default=None, help="Params.diff_threshold override")
    ap.add_argument("--read", action="store_true", help="also compare the text lines (OCR)")
    ap.add_argument("--kinds", help="comma list of defect kinds (default: all)")
    ap.add_argument("--store", choices=["local", "fleet"], default="local",
                    help="where golden runs live: this process's sqlite-vec file, or the fleet store (A records, B reads)")
    args = ap.parse_args()
    kinds = args.kinds.split(",") if args.kinds else list(DEFECTS)
    ocr = None
    if args.read:
        from edge_vla.perception.layer import Perceiver
        from edge_vla.perception.text import TextReader

        ocr = TextReader(threads=2)

    def reader():
        return None if ocr is None else Perceiver(ocr)  # one per run: a layer follows one stream
    params = Params() if args.threshold is None else Params(diff_threshold=args.threshold)
    tmp = tempfile.TemporaryDirectory()
    db = Path(args.db) if args.db else Path(tmp.name) / "bench.db"
    store = MemoryStore(db)
    goldens: dict[tuple[int, str], GoldenRun] = {}
    t_start = time.perf_counter()
    timing = {"record_s": 0.0, "live_frames": 0, "regress_s": 0.0}

    def golden(seed, task) -> GoldenRun:
        key = (seed, task)
        if key not in goldens:
            while len(goldens) >= 2:  # decoded thumbnails and masks are ~3 MB a frame: keep few
                goldens.pop(next(iter(goldens)))
            t0 = time.perf_counter()
            name = f"s{seed}-{task}"
            if args.store == "fleet":
                from edge_vla.memory.fleet import FleetStore

                with FleetStore(str(db) + ".fleet", device_id="device-a") as a:
                    record_frames(a, name, scenario(seed, task, args, live=False).frames(), replace=True,
                                  reader=reader())
                with FleetStore(str(db) + ".fleet", device_id="device-b") as b:
                    goldens[key] = GoldenRun.load(b, name, params)
            else:
                record_frames(store, name, scenario(seed, task, args, live=False).frames(), replace=True,
                              reader=reader())
                goldens[key] = GoldenRun.load(store, name, params)
            timing["record_s"] += time.perf_counter() - t0
        return goldens[key]

    def live_run(seed, task, rng, defect=None):
        g = golden(seed, task)
        injected = {}
        edits = {}
        if defect is not None:
            def do(world):
                injected["d"] = inject_defect(world, defect, rng)
            edits[args.inject_at] = do
        sc = scenario(seed, task, args, live=True, rng=rng, edits=edits)
        reg = LiveRegressor(g, reader=reader())
        rows = []
        for k, f in enumerate(sc.frames()):
            t0 = time.perf_counter()
            r = reg.step(f.image, ts=f.ts)
            timing["regress_s"] += time.perf_counter() - t0
            timing["live_frames"] += 1
            rows.append((k, r))
        return sc, rows, injected.get("d")

    def screen(i: int, task: str | None = None) -> tuple[int, str]:
        return args.seed + i, task or TASK_KINDS[i % len(TASK_KINDS)]

    rng = random.Random(args.seed)
    # benign runs
    benign_frames = 0
    false_alarms = 0
    fa_examples = []
    for i in range(args.benign_screens):
        seed, task = screen(i)
        _, rows, _ = live_run(seed, task, random.Random(rng.getrandbits(32)))
        benign_frames += len(rows)
        for k, r in rows:
            if r.regression:
                false_alarms += 1
                if len(fa_examples) < 10:
                    fa_examples.append({"seed": seed, "task": task, "frame": k,
                                        "boxes": [c.box for c in r.changes]})
    per_kind = {}
    for kind in kinds:
        stats = {"injected": 0, "not_applicable": 0, "detected": 0, "localized": 0, "ious": [],
                 "element_ious": [], "misses": []}
        i = 0
        while stats["injected"] < args.per_kind and i < args.per_kind * 4:
            seed, task = screen(1000 + i if kind == "misaligned_chart" else i,
                                CHART_TASK if kind == "misaligned_chart" else None)
            i += 1
            sc, rows, d = live_run(seed, task, random.Random(rng.getrandbits(32)), kind)
            if d is None:
                stats["not_applicable"] += 1
                continue
            stats["injected"] += 1
            inject_frame = next(k for k, _ in rows if sc.phase + k / args.fps >= args.inject_at)
            for k, r in rows[:inject_frame]:
                benign_frames += 1
                false_alarms += int(r.regression)
            hit = next((r for k, r in rows[inject_frame:] if r.regression), None)
            if hit is None:
                stats["misses"].append({"seed": seed, "task": task, "detail": d.detail})
                continue
            stats["detected"] += 1
            truth = [norm_box(b, args.width, args.height) for b in d.truth]
            best = max((iou(c.box, t) for c in hit.changes for t in truth), default=0.0)
            stats["ious"].append(round(best, 3))
            if d.element is not None:
                el = norm_box(d.element, args.width, args.height)
                stats["element_ious"].append(round(max((iou(c.box, el) for c in hit.changes), default=0.0), 3))
            stats["localized"] += int(best >= 0.5)
        n, det = stats["injected"], stats["detected"]
        stats["recall"] = round(det / n, 4) if n else None
        stats["localized_rate"] = round(stats["localized"] / det, 4) if det else None
        stats["mean_iou"] = round(sum(stats["ious"]) / len(stats["ious"]), 3) if stats["ious"] else None
        per_kind[kind] = stats
    injected = sum(s["injected"] for s in per_kind.values())
    detected = sum(s["detected"] for s in per_kind.values())
    localized = sum(s["localized"] for s in per_kind.values())
    out = {
        "recall": round(detected / injected, 4) if injected else None,
        "false_alarms_per_1000_benign_frames": round(1000 * false_alarms / benign_frames, 2) if benign_frames else None,
        "localized_rate": round(localized / detected, 4) if detected else None,
        "injected": injected, "detected": detected, "localized": localized,
        "benign_frames": benign_frames, "false_alarms": false_alarms, "false_alarm_examples": fa_examples,
        "per_kind": per_kind,
        "params": params.__dict__, "setup": {k: v for k, v in vars(args).items() if k != "db"},
        "timing": {"total_s": round(time.perf_counter() - t_start, 1), "record_s": round(timing["record_s"], 1),
                   "live_frames": timing["live_frames"],
                   "regress_ms_per_frame": round(1e3 * timing["regress_s"] / max(1, timing["live_frames"]), 2)},
        "db_bytes": store.stats()["file_bytes"],
    }
    print(json.dumps(out, indent=1))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
