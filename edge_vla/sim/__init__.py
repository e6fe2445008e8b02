"""The built-in UI simulator: a seeded 2-D world of screens, tasks and an oracle.

It is the video source of ``edge-vla demo``, the environment of closed-loop
tests, and the teacher for training small vision models.

    w = SimWorld(seed=3, width=1280, height=720)
    frame = w.render()            # H x W x 3 uint8 RGB, read-only, cached by w.version
    w.execute(w.oracle())         # ExecResult(status="executed", ...)
    w.advance(0.1)                # sim time: errors clear, charts tick, pop-ups appear
"""

from edge_vla.sim.executor import SimExecutor
from edge_vla.sim.render import FONTS, THEMES
from edge_vla.sim.scene import Element, ExecResult
from edge_vla.sim.tasks import TASK_KINDS
from edge_vla.sim.world import SimWorld

__all__ = ["SimWorld", "SimExecutor", "Element", "ExecResult", "FONTS", "TASK_KINDS", "THEMES"]
