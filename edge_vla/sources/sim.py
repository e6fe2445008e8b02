"""The ``sim`` source: the built-in UI simulator rendered as a live video stream.

The world lives in this process. ``SimExecutorLink`` closes the loop the way a
real device would: it subscribes to the stream's actions on the broker,
executes them on the world, publishes feedback, and announces each task's
instruction as the retained goal. A lock serialises the world between the
render thread, the executor and the oracle policy.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import structlog

from ..config import SourceConfig
from ..frames import FrameSlot, make_frame
from ..mqtt import MqttLink
from ..sim import TASK_KINDS, SimWorld
from ..sim.executor import SimExecutor

log = structlog.get_logger(__name__)


class SimSource:
    kind = "sim"

    def __init__(self, cfg: SourceConfig, **_: object):
        self.cfg = cfg
        if cfg.task is not None and cfg.task not in TASK_KINDS:
            raise ValueError(f"source.task {cfg.task!r} is not a simulator task; known: {', '.join(TASK_KINDS)}")
        self.world = SimWorld(seed=cfg.seed, width=cfg.width, height=cfg.height, task=cfg.task)
        self.lock = threading.Lock()
        self.decode_errors = 0
        self.frames_read = 0

    def _tick(self, dt: float):
        with self.lock:
            self.world.advance(dt)
            return self.world.render(), self.world.instruction

    async def run(self, slot: FrameSlot) -> None:
        period = 1.0 / self.cfg.fps
        last = time.monotonic()
        next_t = last
        while True:
            now = time.monotonic()
            image, instruction = await asyncio.to_thread(self._tick, now - last)
            last = now
            slot.put(make_frame(image, self.cfg.stream, self.frames_read, source="sim",
                                instruction=instruction, t_capture=now))
            self.frames_read += 1
            next_t = max(next_t + period, time.monotonic())
            await asyncio.sleep(next_t - time.monotonic())


class SimExecutorLink:
    """Carries out the stream's actions on the simulator, over MQTT."""

    def __init__(self, source: SimSource, link: MqttLink, stream: str):
        self.source = source
        self.link = link
        self.stream = stream
        self.executor = SimExecutor(source.world, on_new_task=self._announce)
        self._goal_topic = link.topic(stream, "goal")
        self._feedback_topic = link.topic(stream, "feedback")
        link.subscribe(link.topic(stream, "action"), self._on_action)

    def start(self) -> None:
        self.link.start()
        self._announce(self.source.world.instruction)

    def _announce(self, instruction: str) -> None:
        # retained, so a daemon that (re)connects later still learns the task
        self.link.client.publish(self._goal_topic, json.dumps({"instruction": instruction}), qos=1, retain=True)

    def _on_action(self, _topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = payload  # the executor answers "rejected" for anything that is not an action
        with self.source.lock:
            feedback = self.executor.handle(data)
        self.link.publish_json(self._feedback_topic, feedback, qos=1)
