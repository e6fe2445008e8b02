#!/usr/bin/env python3
"""Side-by-side runtime benchmark of exported bundles (JSON on stdout, a table on stderr).

For each model (tiny random LLaVA-CLIP / Llama 4 / student, and a ~20M-parameter
student): export fp32 once, quantize copies to int8 and int4, then measure in
one run vision ms, prefill ms and decode ms/token (onnxruntime, one thread),
the same model in PyTorch eager, and KV bytes/token for fp16/int8/int4 caches.
Also: speculative decoding acceptance/speed-up and the RoI comparison on the
simulator. Needs the export extra (torch). Example:

    .venv/bin/python tools/bench_runtime.py --runs 20 > bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def med(f, runs):
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def bench_onnx(path: Path, runs: int, decode_steps: int = 8) -> dict:
    from edge_vla.runtime.bundle import Bundle
    from edge_vla.runtime.vlm import Engine

    m = Bundle.load(path, verify=False).manifest  # quantized copies: graphs changed after the manifest
    eng = Engine.from_folder(path, m.inputs["kv"], threads=1)
    s = m.inputs["image_size"]
    pixels = np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32)
    img = eng.encode(pixels)
    instr = [b + 4 for b in b"click the ok button"]
    embeds = eng.prompt_embeds(m.inputs["prompt"], img, instr)
    vision = med(lambda: eng.encode(pixels), runs)
    prefill = med(lambda: eng.step(embeds, eng.new_cache("fp32")), runs)

    def dec():
        c = eng.new_cache("fp32")
        eng.step(embeds, c)
        tok = eng.embed_ids([5])
        t = time.perf_counter()
        for _ in range(decode_steps):
            eng.step(tok, c)
        return (time.perf_counter() - t) * 1e3 / decode_steps
    decode = statistics.median(dec() for _ in range(max(3, runs // 2)))
    return {"vision_ms": round(vision, 3), "prefill_ms": round(prefill, 3), "decode_ms_per_token": round(decode, 3),
            "prompt_tokens": int(embeds.shape[1]), "image_tokens": int(img.shape[1])}


def bench_torch(model, kind: str, runs: int, decode_steps: int = 8) -> dict:
    import torch

    from edge_vla.export.families import adapt

    ad = adapt(model)
    s = ad.image_size
    pixels = torch.rand(1, 3, s, s)
    pv = (pixels - torch.tensor(ad.mean).view(1, 3, 1, 1)) / torch.tensor(ad.std).view(1, 3, 1, 1)
    with torch.no_grad():
        img = ad.vision(pv)
        emb = ad.text_model.embed_tokens
        ids = torch.tensor([[1] + [b + 4 for b in b"click the ok button"]])
        embeds = torch.cat([emb(ids[:, :1]), img, emb(ids[:, 1:])], dim=1)
        lm = model.language_model if hasattr(model.language_model, "lm_head") else None

        def full(x, past=None):
            out = ad.text_model(inputs_embeds=x, past_key_values=past, use_cache=True)
            return ad.lm_head(out.last_hidden_state[:, -1:]), out.past_key_values
        vision = med(lambda: ad.vision(pv), runs)
        prefill = med(lambda: full(embeds), runs)

        def dec():
            _, past = full(embeds)
            tok = emb(torch.tensor([[5]]))
            t = time.perf_counter()
            for _ in range(decode_steps):
                _, past = full(tok, past)
            return (time.perf_counter() - t) * 1e3 / decode_steps
        decode = statistics.median(dec() for _ in range(max(3, runs // 2)))
    del lm
    return {"vision_ms": round(vision, 3), "prefill_ms": round(prefill, 3), "decode_ms_per_token": round(decode, 3)}


def kv_table(dims: dict, prompt_tokens: int) -> dict:
    from edge_vla.runtime.kv import KVCache, bytes_per_token

    rng = np.random.default_rng(0)
    out = {}
    fp16 = bytes_per_token("fp16", dims["layers"], dims["kv_heads"], dims["head_dim"])
    for codec in ("fp16", "int8", "int4"):
        bpt = bytes_per_token(codec, dims["layers"], dims["kv_heads"], dims["head_dim"])
        cache = KVCache(codec, dims["layers"], dims["kv_heads"], dims["head_dim"])
        n = 512
        cache.append([rng.normal(size=(1, dims["kv_heads"], n, dims["head_dim"])).astype(np.float32)
                      for _ in range(2 * dims["layers"])])
        out[codec] = {"bytes_per_token": round(bpt, 1), "ratio_to_fp16": round(bpt / fp16, 4),
                      "measured_bytes_per_token_at_512": round(cache.nbytes() / n, 1)}
    return out


def twenty_m_student():
    import torch

    from edge_vla.export.student import EdgeVlaStudent, EdgeVlaStudentConfig

    cfg = EdgeVlaStudentConfig(
        vision_config=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4,
                           image_size=224, patch_size=16),
        text_config=dict(vocab_size=2048, hidden_size=384, intermediate_size=1536, num_hidden_layers=6,
                         num_attention_heads=6, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                         tie_word_embeddings=False),
        merge=2, image_token_id=3, action_start=1024)
    torch.manual_seed(0)
    return EdgeVlaStudent(cfg).eval()


def models(which: list[str]):
    from edge_vla.export.families import tiny

    for name in which:
        if name == "student-20m":
            yield name, twenty_m_student()
        else:
            yield name, tiny(name)


def roi_compare(path: Path, runs: int) -> dict:
    """Vision tokens and ms per frame: one squashed full view, full-resolution tiles, RoI (full + crop).

    Accuracy on small targets is the *resolution bound* with a perfect locator (the trained
    student does not exist yet): is the decoded bin centre inside the target, and how tall is
    the target at the model's input (text under ~6 px is unreadable)?
    """
    from edge_vla.actions import to_pixels
    from edge_vla.runtime.bundle import Bundle
    from edge_vla.runtime.grammar import ActionVocab
    from edge_vla.runtime.roi import crop_box
    from edge_vla.runtime.vlm import Engine
    from edge_vla.sim import SimWorld

    m = Bundle.load(path).manifest
    eng = Engine.from_folder(path, m.inputs["kv"], threads=1)
    s, n_tok = m.inputs["image_size"], m.inputs["num_image_tokens"]
    av = ActionVocab.from_dict(m.action_vocab)
    enc = med(lambda: eng.encode(np.zeros((1, 3, s, s), np.float32)), runs)
    res = {}
    for w, h in ((1280, 720), (1920, 1080)):
        tiles = math.ceil(w / s) * math.ceil(h / s)
        hits = {"full": 0, "tiles": 0, "roi": 0}
        legible = {"full": 0, "tiles": 0, "roi": 0}
        total = 0
        for seed in range(60):
            world = SimWorld(seed=seed, width=w, height=h)
            t = world.target
            if t is None:
                continue
            x0, y0, x1, y1 = t.box
            if (y1 - y0) > 40:  # small targets only
                continue
            total += 1
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            nx, ny = cx * 1000 / w, cy * 1000 / h

            def inside(px, py):
                return x0 <= px < x1 and y0 <= py < y1
            # full view and tiles share the full-frame bin grid (tiles see native pixels)
            bx, by = to_pixels(av.bin_centre(av.to_bin(round(nx))), av.bin_centre(av.to_bin(round(ny))), w, h)
            hits["full"] += inside(bx, by)
            hits["tiles"] += inside(bx, by)
            box = crop_box((round(nx) - 5, round(ny) - 5, round(nx) + 5, round(ny) + 5), w, h, 0.35)
            cw, ch = (box[2] - box[0]) * w / 1000, (box[3] - box[1]) * h / 1000
            qx = av.bin_centre(av.to_bin(round((cx - box[0] * w / 1000) * 1000 / cw)))
            qy = av.bin_centre(av.to_bin(round((cy - box[1] * h / 1000) * 1000 / ch)))
            from edge_vla.actions import crop_to_frame
            fx, fy = crop_to_frame(qx, qy, box)
            hits["roi"] += inside(*to_pixels(fx, fy, w, h))
            th = y1 - y0
            legible["full"] += th * s / h >= 6
            legible["tiles"] += th >= 6
            legible["roi"] += th * s / ch >= 6
        res[f"{w}x{h}"] = {
            "small_targets": total,
            "vision_tokens": {"full": n_tok, "tiles": tiles * n_tok, "roi": 2 * n_tok},
            "vision_ms_per_frame": {"full": round(enc, 2), "tiles": round(enc * tiles, 2), "roi": round(enc * 2, 2)},
            "bin_hit_rate": {k: round(v / max(1, total), 3) for k, v in hits.items()},
            "legible_rate": {k: round(v / max(1, total), 3) for k, v in legible.items()},
        }
    return res


def speculative(path: Path, runs: int) -> dict:
    from edge_vla.config import ModelConfig
    from edge_vla.runtime.families import load_runtime

    out = {}
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(runs)]
    for instr in ("click the ok button", "type hello world into the search field"):
        plain = load_runtime(ModelConfig(path=path, intra_threads=1))
        spec = load_runtime(ModelConfig(path=path, intra_threads=1, speculative=True, speculate_k=4))
        t_plain = med(lambda: [plain.infer(i, instr) for i in imgs], 3)
        t_spec = med(lambda: [spec.infer(i, instr) for i in imgs], 3)
        same = all(plain.infer(i, instr)[0] == spec.infer(i, instr)[0] for i in imgs)
        out[instr] = {"identical": same, "acceptance_rate": round(spec.draft.acceptance_rate, 3),
                      "ms_plain": round(t_plain / runs, 2), "ms_speculative": round(t_spec / runs, 2),
                      "speedup": round(t_plain / t_spec, 3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="llava-clip,llama4,student,student-20m")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-extras", action="store_true", help="no speculative/RoI sections")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from edge_vla.export.exporter import export_model
    from edge_vla.export.families import tiny
    from edge_vla.export.quantize import quantize_bundle_graphs
    from edge_vla.runtime.bundle import Bundle

    report = {"threads": 1, "models": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        for name, model in models([n for n in args.models.split(",") if n]):
            t0 = time.perf_counter()
            base = export_model(model, tmp / name / "fp32", parity_steps=2)
            export_s = time.perf_counter() - t0
            row = {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                   "export_s": round(export_s, 1), "torch_eager": bench_torch(model, name, args.runs)}
            for prec in ("fp32", "int8", "int4"):
                path = base
                if prec != "fp32":
                    path = tmp / name / prec
                    shutil.copytree(base, path)
                    quantize_bundle_graphs(path, prec)
                row[prec] = bench_onnx(path, args.runs)
            dims = Bundle.load(base).manifest.inputs["kv"]
            row["kv_cache"] = kv_table(dims, row["fp32"]["prompt_tokens"])
            row["kv_dims"] = dims
            for prec in ("fp32",):
                row[f"eager_over_onnx_{prec}"] = {k: round(row["torch_eager"][k] / max(1e-9, row[prec][k]), 2)
                                                  for k in ("vision_ms", "prefill_ms", "decode_ms_per_token")}
            report["models"][name] = row
            print(f"{name}: {json.dumps(row)}", file=sys.stderr)
        if not args.skip_extras:
            t = export_model(tiny("student"), tmp / "spec-same", draft=tiny("student"), parity_steps=2)
            report["speculative_same_weights_draft"] = speculative(t, 10)
            t = export_model(twenty_m_student(), tmp / "spec-20m", draft=tiny("student", vocab=2048),
                             parity_steps=1, action_start=1024)
            report["speculative_20m_target_tiny_random_draft"] = speculative(t, 10)
            report["roi"] = roi_compare(tmp / "student-20m" / "fp32" if (tmp / "student-20m").exists() else t,
                                        args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
