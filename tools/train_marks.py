#!/usr/bin/env python3
"""Train student v2 (set-of-marks chooser) on the simulator and export it as a ``marks`` bundle.

    tools/train_marks.py --out models/edge-marks-m3 --work runs/m3 [--episodes 700] [--dagger 1]
                         [--dagger-episodes 300] [--epochs 30] [--workers 2] [--seed 0]

Behaviour cloning on the oracle's rollouts (with random clicks mixed in, so it sees states a
perfect teacher never shows), then ``--dagger`` rounds: the exported student drives, the oracle
labels every state it reaches, and the student is trained again on all of it. Every sample is
what the runtime sees: the real perception stage (OCR + shapes) on the rendered frame. Collected
samples are kept in ``--work`` (pickles), so a round can be resumed or re-trained.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--work", required=True, help="folder for collected samples and checkpoints")
    ap.add_argument("--name", default="edge-vla-marks")
    ap.add_argument("--episodes", type=int, default=700)
    ap.add_argument("--dagger", type=int, default=1, help="DAgger rounds after behaviour cloning")
    ap.add_argument("--dagger-episodes", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default="", help="comma list of more sample pickles to train on")
    ap.add_argument("--reword", type=float, default=0.0,
                    help="DAgger rounds: odds of also asking a visited screen's next click in other words")
    a = ap.parse_args(argv)

    import torch

    from edge_vla.train.marks import Chooser, accuracy, collect, export, train

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    cpu = {"collect_s": 0.0, "train_s": 0.0}

    def gather(name: str, seed: int, episodes: int, policy: str | None, reword: float = 0.0) -> list:
        path = work / f"{name}.pkl"
        if path.exists():
            return pickle.loads(path.read_bytes())
        t = time.time()
        samples = collect(seed, episodes, workers=a.workers, policy=policy, reword=reword)
        cpu["collect_s"] += (time.time() - t) * a.workers
        path.write_bytes(pickle.dumps(samples))
        print(f"{name}: {len(samples)} samples in {time.time() - t:.0f} s", flush=True)
        return samples

    data = gather("bc", a.seed * 100 + 1, a.episodes, None)
    for extra in filter(None, a.extra.split(",")):
        data += pickle.loads(Path(extra).read_bytes())
    torch.set_num_threads(a.workers)
    report = {}
    for rnd in range(a.dagger + 1):
        if rnd:
            data += gather(f"dagger{rnd}", a.seed * 100 + 1 + rnd, a.dagger_episodes, str(Path(a.out)), a.reword)
        rng = random.Random(a.seed)
        shuffled = data[:]
        rng.shuffle(shuffled)
        n_val = max(1, len(shuffled) // 10)
        val, tr = shuffled[:n_val], shuffled[n_val:]
        model = Chooser()
        t = time.time()
        train(model, tr, epochs=a.epochs, seed=a.seed, log=lambda s: print(s, flush=True))
        cpu["train_s"] += (time.time() - t) * a.workers
        report[f"round{rnd}"] = {"samples": len(data), "train": accuracy(model, tr[:1000]),
                                 "val": accuracy(model, val)}
        print(json.dumps(report[f"round{rnd}"]), flush=True)
        torch.save(model.state_dict(), work / f"round{rnd}.pt")
        diff = export(model, a.out, a.name, val[:32], {
            "recipe": "behaviour cloning on oracle rollouts over the real perception stage, then DAgger",
            "rounds": rnd, "samples": len(data), "epochs": a.epochs, "seed": a.seed,
            "cpu_core_seconds": round(cpu["collect_s"] + cpu["train_s"]), "val": report[f"round{rnd}"]["val"]})
        print(f"exported {a.out} (parity {diff:.2e})", flush=True)
    print(json.dumps({"report": report, "cpu_core_seconds": cpu, "wall_s": round(time.time() - t_start)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
