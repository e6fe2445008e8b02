"""The default policy: run the configured model bundle with ONNX Runtime."""

from __future__ import annotations

from ..config import Settings
from ..frames import Frame
from ..runtime.families import load_runtime
from . import Decision


class OnnxPolicy:
    def __init__(self, settings: Settings, **_: object):
        self.settings = settings
        self.runtime = load_runtime(settings.model)
        self.name = self.runtime.name

    def restart(self) -> None:
        """A fresh session after repeated failures (the bundle is verified again)."""
        self.runtime = load_runtime(self.settings.model)

    def decide(self, frame: Frame, instruction: str) -> Decision:
        action, stages = self.runtime.infer(frame.image, instruction)
        return Decision(action=action, model=self.name, stages_ms=stages)

    def close(self) -> None:
        pass
