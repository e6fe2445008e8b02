"""The simulator's privileged oracle as a policy: the ceiling for closed-loop tests.

It reads the world's ground truth instead of the frame, so it only works with
``source.kind = "sim"`` in the same process.
"""

from __future__ import annotations

import contextlib
import time

from ..config import Settings
from ..frames import Frame
from . import Decision


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
