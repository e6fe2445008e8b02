"""The simulator's privileged oracle as a policy: the ceiling for closed-loop tests.

It reads the world's ground truth instead of the frame, so it only works with
``source.kind = "sim"`` in the same process.
"""

from __future__ import annotations

import contextlib
import time

from ..config import Settings
from ..frames import Frame
from ..runtime.avoid import is_dead
from . import Decision, DecisionContext


class OraclePolicy:
    name = "sim-oracle"

    def __init__(self, settings: Settings, world=None, world_lock=None, **_: object):
        if world is None:
            raise ValueError("policy.kind=oracle needs source.kind=sim (it reads the simulator's ground truth)")
        self.world = world
        self.lock = world_lock or contextlib.nullcontext()

    def decide(self, frame: Frame, instruction: str) -> Decision:
        t0 = time.perf_counter()
        with self.lock:  # the render thread and the executor change the world too
            action = self.world.oracle()
        return Decision(action=action, model=self.name, stages_ms={"model": (time.perf_counter() - t0) * 1e3})

    def close(self) -> None:
        pass


class BlindOraclePolicy(OraclePolicy):
    """An oracle blind to pop-ups that learns from verdicts: the closed-loop test subject.

    It goes straight for the task's target; once the loop reports that action as
    dead (no visible effect, repeatedly), it asks the full oracle instead.
    """

    name = "sim-oracle-blind"

    def decide(self, frame: Frame, instruction: str, context: DecisionContext | None = None) -> Decision:
        t0 = time.perf_counter()
        with self.lock:
            action = self.world.oracle(see_dialogs=False)
            if context is not None and is_dead(action, context.avoid):
                action = self.world.oracle()
        return Decision(action=action, model=self.name, stages_ms={"model": (time.perf_counter() - t0) * 1e3})
