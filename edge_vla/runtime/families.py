"""Model families by manifest ``family`` name, each a runtime class imported on demand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from ..actions import Action
from ..config import ModelConfig
from ..registry import Registry
from .bundle import Bundle, BundleError

FAMILIES = Registry("family", {"heads": "edge_vla.runtime.heads:HeadsRuntime",
                                     "vlm": "edge_vla.runtime.vlm:VLMRuntime",
                                     "marks": "edge_vla.runtime.marks:MarksRuntime",
                                     "textmatch": "edge_vla.runtime.marks:TextMatchRuntime"})


class Runtime(Protocol):
    name: str

    def infer(self, image: np.ndarray, instruction: str, avoid: Iterable = frozenset(),
              stream: str = "default", sent: Action | None = None) -> tuple[Action, dict[str, float]]:
        """One action for one RGB frame, plus the time each step took in ms; the model's best action
        that is not dead (``avoid``: what the loop found dead, signatures and ``DeadArea``s, ``runtime.avoid``).
        ``stream``: whose frame it is, for runtimes that keep per-stream state (the element layer);
        ``sent``: what the loop last sent on that stream, when it knows (a decision can be dropped as
        stale or replaced by the watchdog), for runtimes that remember the task's last action."""


register = FAMILIES.register


def load_runtime(cfg: ModelConfig) -> Runtime:
    bundle = Bundle.load(cfg.path)
    try:
        family = FAMILIES.get(bundle.manifest.family)
    except LookupError as exc:
        raise BundleError(f"model bundle {cfg.path}: {exc}") from None
    return family(bundle, cfg)
