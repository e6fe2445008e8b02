"""``edge-vla export SOURCE --out DIR``: argparse setup and handler (heavy imports inside the handler)."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_EXPORT = 1


def add_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser("export", help="convert a Hugging Face checkpoint folder to an edge-vla model bundle")
    ex.add_argument("source", help="local checkpoint folder (config.json + weights); never downloads")
    ex.add_argument("--out", required=True, help="bundle folder to write")
    ex.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int4"],
                    help="weights: int8 = dynamic int8 MatMul, int4 = MatMulNBits 4-bit blocks of 32")
    ex.add_argument("--kv-cache", default="fp16", choices=["fp32", "fp16", "int8", "int4"],
                    help="default KV-cache codec recorded in the manifest (int4 = KIVI)")
    ex.add_argument("--draft", help="checkpoint folder of a draft model for speculative decoding")
    ex.add_argument("--engine", choices=["tensorrt"], help="also build TensorRT engines (needs `tensorrt`)")
    ex.add_argument("--name", help="bundle name (default: edge-vla-FAMILY)")
    ex.add_argument("--action-start", type=int, help="first token id of the action vocabulary "
                    "(default: the checkpoint's action_start, else the last ids of the vocabulary)")
    ex.add_argument("--bins", type=int, help="coordinate bins (default 200)")
    ex.add_argument("--focus", action="store_true", help="add the FOCUS (region of interest) token")
    ex.add_argument("--parity-steps", type=int, default=4, help="greedy decode steps in the parity check")
    ex.add_argument("--overwrite", action="store_true")
    ex.set_defaults(func=cmd_export)
    return ex


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from .exporter import export_model
        from .families import ExportError
    except ImportError as exc:
        print(f"edge-vla export: needs the export extra (pip install 'edge-vla[export]'): {exc}", file=sys.stderr)
        return EXIT_EXPORT
    from .tensorrt import TensorRTUnavailable
    try:
        out = export_model(args.source, args.out, precision=args.precision, kv_cache=args.kv_cache, name=args.name,
                           action_start=args.action_start, bins=args.bins, focus=args.focus,
                           parity_steps=args.parity_steps, draft=args.draft, engine=args.engine,
                           overwrite=args.overwrite)
    except (ExportError, TensorRTUnavailable) as exc:
        print(f"edge-vla export: {exc}", file=sys.stderr)
        return EXIT_EXPORT
    manifest = json.loads((out / "manifest.json").read_text())
    par = manifest["provenance"]["parity"]
    print(json.dumps({"bundle": str(out), "family": manifest["provenance"]["source_family"],
                      "precision": manifest["precision"], "parity_max_abs_diff": par["max_abs_diff"],
                      "tokens_equal": par["tokens_equal"], "quantized": par.get("quantized"),
                      "files": sorted(manifest["files"])}))
    return 0
