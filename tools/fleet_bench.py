#!/usr/bin/env python
"""KNN latency and insert rate: sqlite-vec (the local store) vs the fleet store in qdrant-client's
local mode, at N frames of 256-d float32 (JSON on stdout). Local mode is brute-force Python/numpy,
not Qdrant's HNSW server: its numbers say what a single-box test setup costs, not what a server does.

    PYTHONPATH=. .venv/bin/python tools/fleet_bench.py --frames 100000 --queries 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_vla.memory.embed import FRAME_DIM  # noqa: E402


def unit(rng, n):
    v = rng.standard_normal((n, FRAME_DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 2)


def bench_sqlite(vecs, queries, k, batch, path):
    import apsw
    import sqlite_vec

    c = apsw.Connection(str(path))
    c.enable_load_extension(True)
    c.load_extension(sqlite_vec.loadable_path())
    c.execute(f"CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, stream TEXT PARTITION KEY, "
              f"embedding float32[{FRAME_DIM}] distance_metric=cosine, ts FLOAT, kind TEXT)")
    t0 = time.perf_counter()
    for s in range(0, len(vecs), batch):
        with c:
            for i in range(s, min(len(vecs), s + batch)):
                c.execute("INSERT INTO v(id, stream, embedding, ts, kind) VALUES(?,?,?,?,?)",
                          (i + 1, "default", vecs[i].tobytes(), float(i), "live"))
    ins = time.perf_counter() - t0
    lat = []
    for q in queries:
        t = time.perf_counter()
        rows = list(c.execute("SELECT id, distance FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                              (q.tobytes(), k)))
        lat.append((time.perf_counter() - t) * 1e3)
        assert len(rows) == k
    lat_f = []
    for q in queries:  # with a metadata filter, as retrieval uses (kind)
        t = time.perf_counter()
        list(c.execute("SELECT id FROM v WHERE embedding MATCH ? AND k = ? AND kind = 'live' ORDER BY distance",
                       (q.tobytes(), k)))
        lat_f.append((time.perf_counter() - t) * 1e3)
    c.close()
    return {"insert_per_s": round(len(vecs) / ins), "knn_ms_p50": pct(lat, 50), "knn_ms_p95": pct(lat, 95),
            "knn_filtered_ms_p50": pct(lat_f, 50)}


def bench_qdrant(vecs, queries, k, batch, location):
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as m

    c = QdrantClient(location=":memory:") if location == ":memory:" else QdrantClient(path=location)
    c.create_collection("f", vectors_config=m.VectorParams(size=FRAME_DIM, distance=m.Distance.COSINE))
    t0 = time.perf_counter()
    for s in range(0, len(vecs), batch):
        c.upsert("f", points=m.Batch(ids=list(range(s + 1, min(len(vecs), s + batch) + 1)),
                                     vectors=vecs[s:s + batch].tolist(),
                                     payloads=[{"stream": "default", "ts": float(i), "kind": "live"}
                                               for i in range(s, min(len(vecs), s + batch))]), wait=True)
    ins = time.perf_counter() - t0
    lat, lat_f = [], []
    flt = m.Filter(must=[m.FieldCondition(key="kind", match=m.MatchValue(value="live"))])
    for q in queries:
        t = time.perf_counter()
        res = c.query_points("f", query=q.tolist(), limit=k).points
        lat.append((time.perf_counter() - t) * 1e3)
        assert len(res) == k
    for q in queries[:max(3, len(queries) // 5)]:  # filters are evaluated per point in Python: slow
        t = time.perf_counter()
        c.query_points("f", query=q.tolist(), limit=k, query_filter=flt)
        lat_f.append((time.perf_counter() - t) * 1e3)
    c.close()
    return {"insert_per_s": round(len(vecs) / ins), "knn_ms_p50": pct(lat, 50), "knn_ms_p95": pct(lat, 95),
            "knn_filtered_ms_p50": pct(lat_f, 50)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--disk-frames", type=int, default=5000,
                    help="local mode on disk (a folder: sqlite, one commit per point) is measured at this size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs, queries = unit(rng, args.frames), unit(rng, args.queries)
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    out = {"frames": args.frames, "dim": FRAME_DIM, "k": args.k, "queries": args.queries}
    out["sqlite_vec"] = bench_sqlite(vecs, queries, args.k, args.batch, tmp / "vec.db")
    out["qdrant_local_memory"] = bench_qdrant(vecs, queries, args.k, args.batch, ":memory:")
    n = min(args.disk_frames, args.frames)
    out["qdrant_local_disk"] = {"frames": n, **bench_qdrant(vecs[:n], queries[:10], args.k, 100, str(tmp / "q"))}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
