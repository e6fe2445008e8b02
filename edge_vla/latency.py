"""Latency bookkeeping: recent samples per stage and their percentiles."""

from __future__ import annotations

import numpy as np


class LatencyLog:
    """The last ``maxlen`` values per stage (ms), in preallocated rings: adding on the hot
    path allocates nothing, and a daemon that runs for weeks holds a fixed amount."""

    def __init__(self, maxlen: int = 20000):
        self.maxlen = maxlen
        self._rings: dict[str, np.ndarray] = {}
        self._count: dict[str, int] = {}

    def add(self, stages: dict[str, float]) -> None:
        for stage, ms in stages.items():
            ring = self._rings.get(stage)
            if ring is None:
                ring = self._rings[stage] = np.empty(self.maxlen, dtype=np.float64)
                self._count[stage] = 0
            n = self._count[stage]
            ring[n % self.maxlen] = ms
            self._count[stage] = n + 1

    def values(self) -> dict[str, np.ndarray]:
        """Every stage's kept values (oldest first is not guaranteed: percentiles don't care)."""
        return {stage: ring[: min(self._count[stage], self.maxlen)] for stage, ring in self._rings.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        return {stage: summarize(v) for stage, v in self.values().items() if v.size}


def summarize(values) -> dict[str, float]:
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
