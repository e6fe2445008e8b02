"""TensorRT around the runtime (no tensorrt import needed here): providers, profiles, engine checks.

- ``providers_for``: the configured execution providers in order (TensorRT EP
  with an engine cache under ``model.engine_cache_dir`` and the optimisation
  profiles below, CUDA EP, CPU last), as (name, options) pairs.
- ``profiles``: min/opt/max shapes of each graph input, derived from the
  manifest's shape limits; the exporter's engine builder and the TensorRT EP
  options use the same numbers.
- ``check_engine``: a bundle whose manifest records a TensorRT engine is
  refused when the TensorRT version or the GPU differ from this machine's
  (engines are tied to both).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import structlog

from .bundle import Bundle, BundleError

log = structlog.get_logger(__name__)

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def profiles(inputs: dict) -> dict[str, dict[str, dict[str, list[int]]]]:
    """Per graph, per input: {"min","opt","max"} shapes from manifest ``inputs``.

    The decoder gets two profiles' worth of range in one: new tokens 1..max_prompt
    (opt 1, the decode step) and past 0..max_seq-1 (opt: a typical prompt).
    """
    s = int(inputs["image_size"])
    kv = inputs["kv"]
    layers, heads, hd, hidden = int(kv["layers"]), int(kv["kv_heads"]), int(kv["head_dim"]), int(inputs["hidden"])
    lim = inputs["limits"]
    max_prompt, max_seq, max_new = int(lim["max_prompt"]), int(lim["max_seq"]), int(lim.get("max_step_tokens", 8))
    opt_prompt = int(lim.get("opt_prompt", max_prompt))
    dec: dict[str, dict[str, list[int]]] = {
        "inputs_embeds": {"min": [1, 1, hidden], "opt": [1, 1, hidden], "max": [1, max_prompt, hidden]},
        "logit_positions": {"min": [1], "opt": [1], "max": [max(1, max_new)]},
    }
    for i in range(layers):
        for kind in ("key", "value"):
            dec[f"past_{kind}_{i}"] = {"min": [1, heads, 0, hd], "opt": [1, heads, opt_prompt, hd],
                                       "max": [1, heads, max_seq - 1, hd]}
    vis = {"pixels": {"min": [1, 3, s, s], "opt": [1, 3, s, s], "max": [1, 3, s, s]}}
    return {"vision.onnx": vis, "decoder.onnx": dec}


def _shape_str(graph: dict[str, dict[str, list[int]]], which: str) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in v[which])}" for name, v in graph.items())


def gpu_name() -> str | None:
    """This machine's GPU: nvidia-smi, else the Jetson device-tree model; None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text(errors="replace").strip("\x00\n ")
    return None


def tensorrt_version() -> str | None:
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(tensorrt.__version__)


def providers_for(cfg, bundle: Bundle | None = None, available: list[str] | None = None) -> list:
    """(name, options) in the configured order, limited to what this onnxruntime has; CPU last."""
    from .session import choose_providers

    out: list = []
    for name in choose_providers(list(cfg.providers), available):
        if name == TRT_EP:
            cache = getattr(cfg, "engine_cache_dir", None) or (bundle.path / "engines" if bundle else Path("engines"))
            opts = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache)}
            if bundle is not None and bundle.manifest.precision == "fp16":
                opts["trt_fp16_enable"] = "True"
            out.append((name, opts))
        else:
            out.append((name, {}))
    return out


def decoder_profile_options(inputs: dict) -> dict[str, str]:
    """TensorRT EP explicit-profile options for the decoder graph."""
    dec = profiles(inputs)["decoder.onnx"]
    return {"trt_profile_min_shapes": _shape_str(dec, "min"), "trt_profile_opt_shapes": _shape_str(dec, "opt"),
            "trt_profile_max_shapes": _shape_str(dec, "max")}


def check_engine(bundle: Bundle, providers: list, trt_version: str | None = None, gpu: str | None = None,
                 probe: bool = True) -> None:
    """Refuse a prebuilt TensorRT engine made for another TensorRT version or GPU.

    Only matters when the TensorRT EP is in use and the manifest records an engine.
    """
    engine = (bundle.manifest.provenance or {}).get("engine")
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    if not engine or TRT_EP not in names:
        return
    have_v = trt_version if trt_version is not None else (tensorrt_version() if probe else None)
    have_g = gpu if gpu is not None else (gpu_name() if probe else None)
    if have_v is None:
        raise BundleError(f"model bundle {bundle.path}: has a TensorRT {engine['tensorrt_version']} engine but the "
                          "`tensorrt` Python package is not importable here, so its version cannot be checked")
    if have_v != engine["tensorrt_version"]:
        raise BundleError(f"model bundle {bundle.path}: TensorRT engine built with TensorRT "
                          f"{engine['tensorrt_version']}, this machine has {have_v}: rebuild it here "
                          "(edge-vla export --engine tensorrt)")
    if have_g != engine["gpu"]:
        raise BundleError(f"model bundle {bundle.path}: TensorRT engine built for GPU {engine['gpu']!r}, this "
                          f"machine has {have_g!r}: rebuild it here (edge-vla export --engine tensorrt)")
