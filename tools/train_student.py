#!/usr/bin/env python3
"""Train the edge-vla student on the simulator (issue 5). One command, seeded, resumable.

    tools/train_student.py --out runs/NAME [--resume] [--minutes M] [--device cpu|cuda]

Writes runs/NAME/{train_config.json, checkpoint/, curve.jsonl}; export the result with
``edge-vla export runs/NAME/checkpoint --out DIR --focus``. See edge_vla/train/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from edge_vla.train.loop import TrainConfig

    d = TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run folder (keep it under runs/, which git ignores)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    ap.add_argument("--minutes", type=float, help="stop (checkpoint + final eval) after this much wall time")
    ap.add_argument("--max-samples", type=int, help="stop once this many samples are seen")
    # run settings default to SUPPRESS: a resumed run keeps its own unless a flag is given again
    ap.add_argument("--device", default=argparse.SUPPRESS, help="cpu | cuda | cuda:N (default cpu)")
    ap.add_argument("--threads", type=int, default=argparse.SUPPRESS, help=f"torch intra-op threads (default {d.threads})")
    ap.add_argument("--workers", type=int, default=argparse.SUPPRESS,
                    help=f"data-generation processes (default {d.workers})")
    ap.add_argument("--teacher-bundle", help="label states with this exported bundle instead of the oracle")
    ap.add_argument("--init-from", help="start from the weights of this checkpoint whose names and shapes match")
    ap.add_argument("--save-every-s", type=float, default=600.0)
    ap.add_argument("--no-final-eval", action="store_true")
    for f in ("preset", "seed", "batch_states", "samples_per_state", "lr", "aux_weight", "bin_sigma", "attn_weight",
              "read_weight", "curriculum_samples", "schedule_samples", "eval_every", "eval_cases", "eval_full_cases",
              "dagger_start", "dagger_every", "dagger_tasks", "dagger_beta", "dagger_frac", "warmup_steps"):
        default = getattr(d, f)
        ap.add_argument("--" + f.replace("_", "-"), type=type(default), default=argparse.SUPPRESS,
                        help=f"(default {default})")
    a = ap.parse_args(argv)
    from edge_vla.train.loop import Trainer

    given = {k: getattr(a, k) for k in TrainConfig.__dataclass_fields__ if hasattr(a, k)}
    try:
        tr = Trainer(a.out, TrainConfig(**given), resume=a.resume, given=set(given))
    except FileExistsError as exc:
        print(f"train_student: {exc}", file=sys.stderr)
        return 2
    res = tr.run(minutes=a.minutes, max_samples=a.max_samples, save_every_s=a.save_every_s,
                 final_eval=not a.no_final_eval)
    print(json.dumps({"out": a.out, "checkpoint": str(Path(a.out) / "checkpoint"), **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
