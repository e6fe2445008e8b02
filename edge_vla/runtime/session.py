"""ONNX Runtime sessions: execution providers in configured order, thread counts, errors."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import structlog

from ..config import ModelConfig
from .bundle import BundleError

log = structlog.get_logger(__name__)


def choose_providers(wanted: list[str], available: list[str] | None = None) -> list[str]:
    """The configured providers that this onnxruntime build has, in order; CPU always last."""
    have = set(ort.get_available_providers() if available is None else available)
    chosen = [p for p in wanted if p in have]
    missing = [p for p in wanted if p not in have]
    if missing:
        log.warning("runtime.providers_missing", missing=missing, available=sorted(have))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def open_session(path: Path, cfg: ModelConfig) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=choose_providers(cfg.providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"cannot load {path.name}: {exc}") from None
