"""Export a VLM to an edge-vla ``vlm`` bundle, with a parity check that gates the write (torch only).

``export_model(model, out)``: vision.onnx, embed.npy, decoder.onnx via
``torch.onnx.export(dynamo=True)``; optional weight quantization; then the
parity check: the checkpoint's own forward (PyTorch, no cache) against the
bundle's graphs through onnxruntime with the runtime's own engine (prefill +
N greedy decode steps over the cache), logits max abs diff and greedy tokens.
The bundle is assembled in a staging folder and moved into place only when
parity passes; otherwise ``ExportError`` and nothing is written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime.bundle import Manifest, file_entry, write_manifest
from ..runtime.grammar import ActionVocab
from ..runtime.vlm import DECODER, EMBED, REFERENCE, VISION, Engine, prompt_ids, prompt_spec
from .families import Adapter, ExportError, adapt
from .graphs import DecoderGraph, VisionGraph, llama4_vision_real_rope

OPSET = 18
PARITY_INSTRUCTION = "click the ok button"
# fp32 graphs must match PyTorch to float rounding; quantized graphs are gated on
# logits cosine similarity against the fp32 graphs (random weights give near-flat
# logits, so token agreement is recorded but not gated; check it on trained weights).
FP32_ATOL = 1e-3
QUANT_MIN_COSINE = {"fp16": 0.999, "int8": 0.98, "int4": 0.90}


def _export(module, args, path: Path, input_names, output_names, dynamic_shapes=None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, args, dynamo=True, input_names=input_names, output_names=output_names,
                                 dynamic_shapes=dynamic_shapes, opset_version=OPSET, optimize=True,
                                 verbose=False, external_data=False)
    prog.save(str(path), external_data=_too_big(prog))


def _too_big(prog) -> bool:
    try:
        return sum(int(np.prod(t.shape)) * 4 for t in prog.model.graph.initializers.values()) > 1_800_000_000
    except Exception:
        return False


def export_vision(ad: Adapter, path: Path) -> int:
    graph = VisionGraph(ad.vision, ad.mean, ad.std).eval()
    pixels = torch.rand(1, 3, ad.image_size, ad.image_size)
    ctx = llama4_vision_real_rope(ad.model.vision_model) if ad.family == "llama4" else _null()
    with ctx, torch.no_grad():
        n = graph(pixels).shape[1]
        _export(graph, (pixels,), path, ["pixels"], ["image_embeds"])
    return int(n)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def export_decoder(ad: Adapter, path: Path) -> None:
    graph = DecoderGraph(ad.text_model, ad.lm_head, ad.flavour).eval()
    layers, heads, hd = ad.kv_dims
    hidden = ad.text_config.hidden_size
    t, p = 5, 3
    args = (torch.randn(1, t, hidden), torch.tensor([t - 2, t - 1], dtype=torch.int64),
            *[torch.randn(1, heads, p, hd) for _ in range(2 * layers)])
    T, L, P = torch.export.Dim("tokens", min=1, max=8192), torch.export.Dim("logits", min=1, max=8192), \
        torch.export.Dim("past", min=0, max=65536)
    dyn = ({1: T}, {0: L}, tuple({2: P} for _ in range(2 * layers)))  # *past arrives as one tuple
    names_in = ["inputs_embeds", "logit_positions"] + [f"past_{k}_{i}" for i in range(layers) for k in ("key", "value")]
    names_out = ["logits"] + [f"present_{k}_{i}" for i in range(layers) for k in ("key", "value")]
    with torch.no_grad():
        _export(graph, args, path, names_in, names_out, dynamic_shapes=dyn)


def _prompt(ad: Adapter, n_image: int) -> dict:
    bos = getattr(ad.text_config, "bos_token_id", None)
    return prompt_spec([int(bos)] if isinstance(bos, int) else [], ad.image_token_id, n_image,
                       bool(ad.extra.get("text_first")), getattr(ad.text_config, "eos_token_id", None))


def reference_inputs(ad: Adapter, prompt: dict, token_ids: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(1, 3, ad.image_size, ad.image_size, generator=g)
    return pixels, torch.tensor([prompt_ids(prompt, token_ids)], dtype=torch.int64)


@torch.no_grad()
def torch_greedy(ad: Adapter, input_ids: torch.Tensor, pixels: torch.Tensor, steps: int):
    """Greedy tokens and per-step last logits from the checkpoint's own forward, no cache."""
    ids, logits, tokens = input_ids, [], []
    for _ in range(steps + 1):
        last = ad.reference_logits(ids, pixels)[0, -1].float()
        logits.append(last.numpy())
        tok = int(last.argmax())
        tokens.append(tok)
        ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    return np.stack(logits), tokens


def onnx_greedy(engine: Engine, prompt: dict, pixels: np.ndarray, token_ids: list[int], steps: int,
                codec: str = "fp32", force: list[int] | None = None):
    """Greedy over the bundle's graphs; with ``force``, feed those tokens instead (teacher forcing),
    so a quantized graph's logits are compared on the same prefixes as the fp32 ones."""
    image = engine.encode(pixels)
    embeds = engine.prompt_embeds(prompt, image, token_ids)
    cache = engine.new_cache(codec)
    logits, tokens = [], []
    last = engine.step(embeds, cache)[-1]
    for i in range(steps + 1):
        logits.append(last)
        tok = int(np.argmax(last))
        tokens.append(tok)
        if i < steps:
            last = engine.step(engine.embed_ids([force[i] if force else tok]), cache)[-1]
    return np.stack(logits), tokens


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(c.min())


def _dims(ad: Adapter) -> dict:
    layers, heads, hd = ad.kv_dims
    return {"layers": layers, "kv_heads": heads, "head_dim": hd}


def export_model(model, out: str | Path, *, precision: str = "fp32", kv_cache: str = "fp16", name: str | None = None,
                 action_start: int | None = None, bins: int | None = None, focus: bool = False,
                 parity_steps: int = 4, seed: int = 0, source: str | None = None,
                 tokenizer_file: Path | None = None, max_instruction_tokens: int = 64, max_seq: int = 1024,
                 draft=None, engine: str | None = None, overwrite: bool = False, quiet: bool = True,
                 _tamper=None) -> Path:
    """Export ``model`` (a transformers model object or a checkpoint folder) to a bundle at ``out``."""
    from .families import load_checkpoint

    t_start = time.perf_counter()
    if isinstance(model, (str, Path)):
        source = source or str(model)
        if tokenizer_file is None and (Path(model) / "tokenizer.json").is_file():
            tokenizer_file = Path(model) / "tokenizer.json"
        model = load_checkpoint(model)
    model.config._attn_implementation = "eager"
    for sub in ("text_config", "vision_config"):
        if getattr(model.config, sub, None) is not None:
            getattr(model.config, sub)._attn_implementation = "eager"
    if precision not in ("fp32", "fp16", "int8", "int4"):
        raise ExportError(f"unknown precision {precision!r} (fp32, fp16, int8, int4)")
    if kv_cache not in ("fp32", "fp16", "int8", "int4"):
        raise ExportError(f"unknown KV-cache scheme {kv_cache!r} (fp16, int8, int4)")
    if engine == "tensorrt":  # fail before the (long) export, not after it
        from .tensorrt import import_tensorrt
        import_tensorrt()
    ad = adapt(model)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty (pass overwrite)")
    vocab_n = ad.vocab_size
    bins = bins or int(getattr(model.config, "action_bins", 200) or 200)
    probe = ActionVocab(start=0, bins=bins, focus=focus)
    start = action_start if action_start is not None else getattr(model.config, "action_start", None)
    start = int(start) if start is not None else vocab_n - probe.size
    av = ActionVocab(start=start, bins=bins, focus=focus)
    if start < 0 or start + av.size > vocab_n:
        raise ExportError(f"action vocabulary ({av.size} tokens from {start}) does not fit the model's "
                          f"vocabulary of {vocab_n}")
    if tokenizer_file is not None:
        tok_spec = {"kind": "hf-json", "file": "tokenizer.json", "max_tokens": max_instruction_tokens}
    else:
        tok_spec = {"kind": "bytes", "offset": 4, "max_tokens": max_instruction_tokens}
        if start < 4 + 256:
            raise ExportError(f"byte tokenizer ids 4..259 overlap the action tokens starting at {start}")
    if start <= ad.image_token_id < start + av.size:
        raise ExportError("the image placeholder token lies inside the action vocabulary")

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=str(out.parent)))  # same filesystem: the final move is a rename
    try:
        n_image = export_vision(ad, stage / VISION)
        export_decoder(ad, stage / DECODER)
        np.save(stage / EMBED, ad.embed_weight.detach().float().numpy())
        prompt = _prompt(ad, n_image)
        if tok_spec["kind"] == "bytes":
            token_ids = [b + 4 for b in PARITY_INSTRUCTION.encode()]
        else:
            from tokenizers import Tokenizer as HfTokenizer
            shutil.copy(tokenizer_file, stage / "tokenizer.json")
            token_ids = HfTokenizer.from_file(str(tokenizer_file)).encode(PARITY_INSTRUCTION,
                                                                         add_special_tokens=False).ids
        dims = _dims(ad)
        pixels, input_ids = reference_inputs(ad, prompt, token_ids, seed)
        t_logits, t_tokens = torch_greedy(ad, input_ids, pixels, parity_steps)  # the original (complex) code
        if _tamper is not None:  # tests: corrupt a graph before the parity check
            _tamper(stage)
        eng = Engine.from_folder(stage, dims, threads=1, mmap=False)
        o_logits, o_tokens = onnx_greedy(eng, prompt, pixels.numpy(), token_ids, parity_steps)
        diff = float(np.abs(o_logits - t_logits).max())
        scale = float(np.abs(t_logits).max())
        parity: dict[str, Any] = {"steps": parity_steps, "max_abs_diff": diff, "logit_scale": scale,
                                  "atol": FP32_ATOL, "torch_tokens": t_tokens, "onnx_tokens": o_tokens,
                                  "tokens_equal": t_tokens == o_tokens}
        if not (diff <= FP32_ATOL * max(1.0, scale)) or t_tokens != o_tokens:
            raise ExportError(f"parity check failed: ONNX vs PyTorch logits max abs diff {diff:.3g} "
                              f"(tolerance {FP32_ATOL * max(1.0, scale):.3g}), greedy tokens torch {t_tokens} "
                              f"vs onnx {o_tokens}; no bundle written")
        ref = {"pixels": pixels.numpy(), "input_ids": input_ids.numpy(), "instruction_ids": np.array(token_ids),
               "torch_logits": t_logits, "torch_tokens": np.array(t_tokens)}
        if precision != "fp32":
            from .quantize import quantize_bundle_graphs
            qinfo = quantize_bundle_graphs(stage, precision)
            eng = Engine.from_folder(stage, dims, threads=1, mmap=False)
            q_logits, q_tokens = onnx_greedy(eng, prompt, pixels.numpy(), token_ids, parity_steps, force=o_tokens)
            cos = _cosine(q_logits, o_logits)
            agree = float(np.mean([a == b for a, b in zip(q_tokens, o_tokens)]))
            parity["quantized"] = {"precision": precision, "min_cosine_vs_fp32": cos, "threshold":
                                   QUANT_MIN_COSINE[precision], "token_agreement": agree, "tokens": q_tokens,
                                   "max_abs_diff_vs_fp32": float(np.abs(q_logits - o_logits).max()), **qinfo}
            if cos < QUANT_MIN_COSINE[precision]:
                raise ExportError(f"{precision} parity check failed: logits cosine vs fp32 {cos:.4f} < "
                                  f"{QUANT_MIN_COSINE[precision]}; no bundle written")
            ref["onnx_logits"] = q_logits
            ref["onnx_tokens"] = np.array(q_tokens)
        else:
            ref["onnx_logits"] = o_logits
            ref["onnx_tokens"] = np.array(o_tokens)
        np.savez(stage / REFERENCE, **ref)
        if draft is not None:
            _export_draft(draft, stage / "draft", ad, av, precision, seed)
        hidden = ad.text_config.hidden_size
        max_prompt = len(prompt["prefix"]) + n_image + max_instruction_tokens + len(prompt["suffix"])
        inputs = {"image_size": ad.image_size, "num_image_tokens": n_image, "prompt": prompt, "kv": dims,
                  "hidden": hidden, "vocab_size": vocab_n,
                  "limits": {"max_prompt": max_prompt, "opt_prompt": max_prompt - max_instruction_tokens // 2,
                             "max_seq": max(max_seq, max_prompt + 64), "max_step_tokens": 8}}
        provenance = {"exporter": "edge_vla.export", "source": source or f"in-memory {type(model).__name__}",
                      "source_family": ad.family, "vision_tower": ad.extra.get("vision_tower"),
                      "decoder_flavour": ad.flavour, "torch": torch.__version__, "opset": OPSET,
                      "parity": parity, "export_s": round(time.perf_counter() - t_start, 2)}
        try:
            import transformers
            provenance["transformers"] = transformers.__version__
        except ImportError:
            pass
        manifest = _manifest(stage, name or f"edge-vla-{ad.family}", inputs, tok_spec, av, precision, kv_cache,
                             provenance)
        if engine == "tensorrt":
            from .tensorrt import build_engines
            provenance["engine"] = build_engines(stage, manifest)
            manifest = _manifest(stage, manifest.name, inputs, tok_spec, av, precision, kv_cache, provenance)
        elif engine not in (None, "none", "onnx"):
            raise ExportError(f"unknown engine {engine!r} (tensorrt)")
        write_manifest(stage, manifest)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(stage), str(out))
        return out
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _manifest(folder: Path, name, inputs, tok_spec, av, precision, kv_cache, provenance) -> Manifest:
    files = {str(p.relative_to(folder)): file_entry(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    return Manifest(name=name, family="vlm", files=files, inputs=inputs, tokenizer=tok_spec,
                    action_vocab=av.to_dict(), precision=precision, kv_cache=kv_cache, provenance=provenance)


def _export_draft(draft, folder: Path, target: Adapter, av: ActionVocab, precision: str, seed: int) -> None:
    """A draft model for speculative decoding: same vocabulary and action tokens, its own graphs."""
    from .families import load_checkpoint

    if isinstance(draft, (str, Path)):
        draft = load_checkpoint(draft)
    dad = adapt(draft)
    if dad.vocab_size != target.vocab_size:
        raise ExportError(f"draft vocabulary {dad.vocab_size} != target vocabulary {target.vocab_size}")
    folder.mkdir(parents=True)
    n_image = export_vision(dad, folder / VISION)
    export_decoder(dad, folder / DECODER)
    np.save(folder / EMBED, dad.embed_weight.detach().float().numpy())
    prompt = _prompt(dad, n_image)
    token_ids = [b + 4 for b in PARITY_INSTRUCTION.encode()]
    pixels, input_ids = reference_inputs(dad, prompt, token_ids, seed)
    t_logits, t_tokens = torch_greedy(dad, input_ids, pixels, 2)
    eng = Engine.from_folder(folder, _dims(dad), threads=1, mmap=False)
    o_logits, o_tokens = onnx_greedy(eng, prompt, pixels.numpy(), token_ids, 2)
    diff = float(np.abs(o_logits - t_logits).max())
    if diff > FP32_ATOL * max(1.0, float(np.abs(t_logits).max())) or t_tokens != o_tokens:
        raise ExportError(f"draft parity check failed (max abs diff {diff:.3g}); no bundle written")
    (folder / "draft.json").write_text(json.dumps({"image_size": dad.image_size, "prompt": prompt, "kv": _dims(dad),
                                                   "family": dad.family, "parity_max_abs_diff": diff}))
