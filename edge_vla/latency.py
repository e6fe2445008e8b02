"""Latency bookkeeping: recent samples per stage and their percentiles."""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyLog:
    """Keeps the last ``maxlen`` values per stage (ms); cheap to add to on the hot path."""

    def __init__(self, maxlen: int = 20000):
        self.maxlen = maxlen
        self.samples: dict[str, deque[float]] = {}

    def add(self, stages: dict[str, float]) -> None:
        for stage, ms in stages.items():
            q = self.samples.get(stage)
            if q is None:
                q = self.samples[stage] = deque(maxlen=self.maxlen)
            q.append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        return {stage: summarize(list(q)) for stage, q in self.samples.items() if q}


def summarize(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "mean": float(a.mean())}


def format_table(summary: dict[str, dict[str, float]], order: list[str] | None = None) -> str:
    stages = order or list(summary)
    rows = [f"{'stage':<22}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"]
    for stage in stages:
        s = summary.get(stage)
        if s:
            rows.append(f"{stage:<22}{s['n']:>7}{s['p50']:>10.2f}{s['p95']:>10.2f}{s['max']:>10.2f}")
    return "\n".join(rows)
