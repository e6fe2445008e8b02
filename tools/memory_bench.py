#!/usr/bin/env python
"""Memory store benchmark (JSON): embed cost, bytes per frame, KNN p50 at N frames, int8/bit recall.

- embed: GridEmbedder on real 1280x720 simulator frames (ms per frame).
- bytes per frame: real simulator frames through the ingest's record path
  (frame vector, uint8 tiles, 160 px JPEG thumbnail) into a fresh database.
- KNN: N frames in the real store (vec0 float32[256] cosine, stream partition,
  ts/kind metadata), vectors made from real frame vectors plus small noise (so
  there are many near-duplicates, as in a real stream); k=10, p50/p95 over
  queries, with and without a stream + time filter. The same vectors in int8
  and bit vec0 tables: latency and recall@10 against exact float32.

    .venv/bin/python tools/memory_bench.py --n 100000
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

from edge_vla.memory.embed import FRAME_DIM, GridEmbedder, quantize_bit, quantize_int8  # noqa: E402
from edge_vla.memory.ingest import encode_thumb  # noqa: E402
from edge_vla.memory.store import FrameRecord, MemoryStore  # noqa: E402
from edge_vla.sim import TASK_KINDS, SimWorld  # noqa: E402


def pct(xs, p):
    return round(float(np.percentile(np.array(xs), p)), 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--base-frames", type=int, default=300, help="distinct simulator frames")
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    emb = GridEmbedder()
    rng = np.random.default_rng(0)
    # real frames
    images = []
    for i in range(args.base_frames):
        w = SimWorld(seed=i // 3, width=1280, height=720, task=TASK_KINDS[i % len(TASK_KINDS)])
        w.advance(0.7 * (i % 3))
        images.append(w.render())
    t0 = time.perf_counter()
    embs = [emb.embed(im) for im in images]
    embed_ms = (time.perf_counter() - t0) * 1e3 / len(images)
    base = np.stack([e.frame for e in embs])
    out: dict = {"embedder": emb.name, "frame_dim": FRAME_DIM, "embed_ms_per_frame_1280x720": round(embed_ms, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        # bytes per frame on the real path
        st = MemoryStore(Path(tmp) / "real.db")
        recs = []
        for k, (im, e) in enumerate(zip(images, embs)):
            thumb, size = encode_thumb(im, 160, "jpeg")
            recs.append(FrameRecord("default", k, 1e9 + k, 1280, 720, e, thumb=thumb, thumb_size=size))
        for i in range(0, len(recs), 16):
            st.write_batch(recs[i:i + 16])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s = st.stats()
        out["bytes_per_frame"] = s["bytes_per_frame"]
        out["thumb_bytes_mean"] = round(float(np.mean([len(r.thumb) for r in recs])), 1)
        st.close()
        # N frames for KNN
        st = MemoryStore(Path(tmp) / "big.db")
        idx = rng.integers(0, len(base), args.n)
        vecs = base[idx] + rng.normal(0, 0.01, (args.n, FRAME_DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        tiles_blob = recs[0].embedding
        thumb_blob = recs[0].thumb
        t0 = time.perf_counter()
        batch = []
        for k in range(args.n):
            e = type(tiles_blob)(frame=vecs[k], tiles=tiles_blob.tiles, cols=tiles_blob.cols, rows=tiles_blob.rows)
            batch.append(FrameRecord("cam-a" if k % 2 else "cam-b", k, 1e9 + k * 0.1, 1280, 720, e,
                                     thumb=thumb_blob, thumb_size=(160, 90)))
            if len(batch) == 256:
                st.write_batch(batch)
                batch = []
        if batch:
            st.write_batch(batch)
        insert_s = time.perf_counter() - t0
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["n"] = args.n
        out["insert_frames_per_s"] = round(args.n / insert_s)
        out["bytes_per_frame_at_n"] = st.stats()["bytes_per_frame"]
        # queries: noisy copies of real frames
        q_idx = rng.integers(0, len(base), args.queries)
        queries = base[q_idx] + rng.normal(0, 0.01, (args.queries, FRAME_DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = [set(np.argsort(-(vecs @ q))[:10] + 1) for q in queries]  # frame ids are 1-based
        lat, lat_f, rec32 = [], [], []
        for q, ex in zip(queries, exact):
            t0 = time.perf_counter()
            hits = st.knn(q, 10)
            lat.append((time.perf_counter() - t0) * 1e3)
            rec32.append(len(ex & {h.frame_id for h in hits}) / 10)
            t0 = time.perf_counter()
            st.knn(q, 10, stream="cam-a", t_from=1e9 + args.n * 0.025, t_to=1e9 + args.n * 0.075)
            lat_f.append((time.perf_counter() - t0) * 1e3)
        out["knn_float32"] = {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "recall_at_10": round(np.mean(rec32), 3),
                              "filtered_stream_and_time_p50_ms": pct(lat_f, 50)}
        for kind, qf, col in (("int8", quantize_int8, "int8[256]"), ("bit", quantize_bit, "bit[256]")):
            st.conn.execute(f"CREATE VIRTUAL TABLE v_{kind} USING vec0(embedding {col})")
            fn = "vec_int8" if kind == "int8" else "vec_bit"
            with st.conn:
                for k in range(args.n):
                    st.conn.execute(f"INSERT INTO v_{kind}(rowid, embedding) VALUES(?, {fn}(?))",
                                    (k + 1, qf(vecs[k]).tobytes()))
            lat, rec = [], []
            for q, ex in zip(queries, exact):
                t0 = time.perf_counter()
                rows = st.conn.execute(f"SELECT rowid FROM v_{kind} WHERE embedding MATCH {fn}(?) AND k = 10",
                                       (qf(q).tobytes(),)).fetchall()
                lat.append((time.perf_counter() - t0) * 1e3)
                rec.append(len(ex & {r[0] for r in rows}) / 10)
            out[f"knn_{kind}"] = {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "recall_at_10": round(np.mean(rec), 3),
                                  "vector_bytes": FRAME_DIM if kind == "int8" else FRAME_DIM // 8}
        out["knn_float32"]["vector_bytes"] = FRAME_DIM * 4
        st.close()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
