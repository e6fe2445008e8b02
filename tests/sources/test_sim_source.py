import asyncio

import pytest

from edge_vla.config import SourceConfig
from edge_vla.frames import FrameSlot
from edge_vla.sources.sim import SimSource


async def test_sim_source_paces_frames_and_names_the_task():
    src = SimSource(SourceConfig(kind="sim", width=320, height=240, fps=20, task="checkbox"))
    slot = FrameSlot()
    task = asyncio.create_task(src.run(slot))
    await asyncio.sleep(0.55)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 7 <= src.frames_read <= 14
    frame = slot.latest
    assert frame.image.shape == (240, 320, 3) and frame.instruction == src.world.instruction
    assert src.world.task_kind == "checkbox"


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="source.task 'fly' is not a simulator task"):
        SimSource(SourceConfig(kind="sim", task="fly"))
