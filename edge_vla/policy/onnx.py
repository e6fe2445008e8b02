"""The default policy: run the configured model bundle with ONNX Runtime."""

from __future__ import annotations

from ..config import Settings
from ..frames import Frame
from ..runtime.families import load_runtime
from . import Decision, DecisionContext


class OnnxPolicy:
    def __init__(self, settings: Settings, **_: object):
        self.settings = settings
        self.runtime = load_runtime(settings.model)
        self.name = self.runtime.name

    def restart(self) -> None:
        """A fresh session after repeated failures (the bundle is verified again)."""
        self.runtime = load_runtime(self.settings.model)

    def decide(self, frame: Frame, instruction: str, context: DecisionContext | None = None) -> Decision:
        # the loop's dead actions steer the model's own choice (runtime.avoid) before the watchdog
        # has to replace it with a generic alternative
        avoid = context.avoid if context is not None else frozenset()
        sent = context.sent if context is not None else None
        action, stages = self.runtime.infer(frame.image, instruction, avoid, stream=frame.stream, sent=sent)
        return Decision(action=action, model=self.name, stages_ms=stages, **self._seen(frame.stream))

    def _seen(self, stream: str) -> dict:
        """What this decision was made among (read here, in the worker thread, right after the inference
        that set it): the marks runtimes' element layer (frozen, so a reference is safe to hand over) and
        the RoI runtime's focus crop."""
        out = {}
        state = getattr(self.runtime, "state", None)
        if state is not None:
            out["layer"] = state(stream).layer
        roi = getattr(self.runtime, "roi", None)
        if roi is not None and getattr(roi, "box", None) is not None:
            out["focus"] = tuple(roi.box)
        return out

    def close(self) -> None:
        pass
