"""Teachers: who labels a state. ``teacher(world, frame) -> (Action | None, target pixel box | None)``.

- the simulator's privileged oracle (default: ``data.oracle_action``) reads the true state;
- ``BundleTeacher`` runs any exported bundle on the frame (label recorded or simulated
  frames with a bigger model); it sees only pixels and the instruction, so it gives a
  point, not a box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..actions import Action
from ..runtime.grammar import ActionVocab
from .data import vocab_action


class BundleTeacher:
    def __init__(self, path: str | Path, vocab: ActionVocab, threads: int = 1):
        from ..config import ModelConfig
        from ..runtime.bundle import Bundle
        from ..runtime.families import load_runtime

        focus = bool(Bundle.load(Path(path)).manifest.action_vocab.get("focus"))
        cfg = ModelConfig(path=Path(path), intra_threads=threads, roi="focus" if focus else "off")
        self.runtime = load_runtime(cfg)
        self.vocab = vocab
        self.name = f"bundle:{Path(path).name}"

    def __call__(self, world, frame: np.ndarray) -> tuple[Action | None, tuple | None]:
        roi = getattr(self.runtime, "roi", None)
        if roi is not None:
            roi.box = None  # each state is labelled on its own
        action, _ = self.runtime.infer(np.ascontiguousarray(frame), world.instruction)
        return vocab_action(action, self.vocab), None
