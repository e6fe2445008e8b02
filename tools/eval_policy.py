#!/usr/bin/env python3
"""Evaluate a policy bundle in the simulator; prints one JSON object (issue 5).

    tools/eval_policy.py BUNDLE [--cases 100] [--closed-loop 30] [--no-loop-memory] [--daemon 6]
                            [--roi auto|focus|off] [--out FILE]

Grounding accuracy on held-out screens (the click lands inside the target's box)
per resolution, theme and task; the RoI crop stage alone; closed-loop task
success, mean steps and time per task; latency per stage. Works on any bundle
(``vlm``, ``marks``, the ``textmatch`` baseline; numpy + onnxruntime only); ``--real-pages DIR`` adds
grounding on real HTML pages rendered by ``tools/real_pages.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="exported bundle folder (manifest.json)")
    ap.add_argument("--cases", type=int, default=100, help="held-out grounding screens")
    ap.add_argument("--crop-cases", type=int, default=None, help="held-out RoI crop cases (default: --cases)")
    ap.add_argument("--closed-loop", type=int, default=30, help="held-out closed-loop tasks")
    ap.add_argument("--max-steps", type=int, default=15)
    ap.add_argument("--no-loop-memory", action="store_true",
                    help="closed loop: act on every frame with no verifier/watchdog (the bare policy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roi", default="auto", choices=["auto", "focus", "off"],
                    help="auto: focus when the bundle's vocabulary has FOCUS")
    ap.add_argument("--crop-scale", type=float, default=0.35, help="RoI crop side / frame short side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-cache", choices=["fp32", "fp16", "int8", "int4"])
    ap.add_argument("--resolutions", help="comma list WxH (default: 390x844,1280x720,1920x1080,3840x2160)")
    ap.add_argument("--daemon", type=int, default=0,
                    help="also run this many held-out tasks through the full daemon over MQTT")
    ap.add_argument("--daemon-seconds", type=float, default=10.0, help="wall time per daemon task")
    ap.add_argument("--real-pages", help="folder from tools/real_pages.py: grounding on real HTML pages")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)

    from edge_vla import log
    from edge_vla.config import LoopConfig, ModelConfig
    from edge_vla.runtime.bundle import Bundle
    from edge_vla.runtime.families import load_runtime
    from edge_vla.train import evaluate as ev
    from edge_vla.train.data import EVAL_RESOLUTIONS

    log.configure("warning", "json")  # stdout is the JSON result
    bundle = Bundle.load(Path(a.bundle))
    focus = bool(bundle.manifest.action_vocab.get("focus"))
    cfg = ModelConfig(path=Path(a.bundle), intra_threads=a.threads, roi=a.roi, roi_crop_scale=a.crop_scale,
                      kv_cache=a.kv_cache)
    rt = load_runtime(cfg)  # the runtime resolves roi "auto" from the bundle, as in the daemon
    roi = "focus" if getattr(rt, "roi", None) is not None else "off"
    res = tuple(tuple(int(v) for v in r.split("x")) for r in a.resolutions.split(",")) if a.resolutions \
        else EVAL_RESOLUTIONS
    t0 = time.perf_counter()
    stages: list = []
    out: dict = {"bundle": str(a.bundle), "name": bundle.manifest.name, "precision": bundle.manifest.precision,
                 "kv_cache": rt.codec if hasattr(rt, "codec") else None, "roi": roi, "seed": a.seed,
                 "threads": a.threads}
    cases = ev.grounding_cases(a.cases, seed=a.seed, resolutions=res)
    out["grounding"] = ev.grounding(rt, cases, stages=stages)
    if focus and hasattr(rt, "decode_view"):
        n = a.crop_cases if a.crop_cases is not None else a.cases
        out["crop_grounding"] = ev.crop_grounding(rt, ev.grounding_cases(n, seed=a.seed + 7, resolutions=res))
    if a.closed_loop:
        loop = None if a.no_loop_memory else LoopConfig()
        out["closed_loop"] = ev.closed_loop(rt, a.closed_loop, seed=a.seed, max_steps=a.max_steps, loop=loop,
                                            resolutions=res, stages=stages)
    if a.real_pages:
        out["real_pages"] = ev.real_page_grounding(rt, a.real_pages)
    out["latency_ms"] = ev.latency(stages)
    if a.daemon:
        out["daemon"] = ev.through_daemon(a.bundle, a.daemon, seed=a.seed, seconds=a.daemon_seconds,
                                          threads=a.threads, kv_cache=a.kv_cache)
    out["eval_s"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(out, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
