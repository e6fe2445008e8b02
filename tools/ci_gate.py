#!/usr/bin/env python3
"""Measure what CI re-measures (tests/models/test_shipped_marks.py) and store it in BUNDLE/eval.json as ``ci``.

    tools/ci_gate.py BUNDLE [--grounding 30] [--closed-loop 12] [--seed 0]

Run it after training or changing perception; CI then fails when a later change loses cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--grounding", type=int, default=30)
    ap.add_argument("--closed-loop", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from edge_vla import log
    from edge_vla.config import LoopConfig, ModelConfig
    from edge_vla.runtime.families import load_runtime
    from edge_vla.train import evaluate as ev

    log.configure("warning", "json")
    rt = load_runtime(ModelConfig(path=Path(a.bundle), intra_threads=2))
    g = ev.grounding(rt, ev.grounding_cases(a.grounding, seed=a.seed))
    c = ev.closed_loop(rt, a.closed_loop, seed=a.seed, loop=LoopConfig())
    path = Path(a.bundle) / "eval.json"
    card = json.loads(path.read_text()) if path.exists() else {}
    card["ci"] = {"seed": a.seed, "grounding": {"n": g["n"], "rate": g["rate"]},
                  "closed_loop": {"n": c["n"], "success_rate": c["success_rate"]}}
    path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["ci"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
