"""The stream loop with a real ONNX policy and a real broker; the source is a numpy generator."""

import asyncio
import json
import threading
import time

import numpy as np

from edge_vla.actions import ActionMessage
from edge_vla.frames import FrameSlot, make_frame
from edge_vla.mqtt import MqttLink
from edge_vla.pipeline import StreamPipeline
from edge_vla.policy import Decision, create_policy


class PatternSource:
    """Moving gradient frames at ``fps``; optionally injects broken frames."""

    kind = "pattern"

    def __init__(self, fps=30.0, n=None, size=(240, 320), bad_every=0):
        self.fps, self.n, self.size, self.bad_every = fps, n, size, bad_every
        self.decode_errors = 0

    async def run(self, slot: FrameSlot) -> None:
        i = 0
        while self.n is None or i < self.n:
            h, w = self.size
            img = np.full((h, w, 3), (i * 7) % 256, dtype=np.uint8)
            img[:, (i * 5) % w] = 255
            frame = make_frame(img, "default", i, source="pattern")
            if self.bad_every and i % self.bad_every == 0:
                object.__setattr__(frame, "image", np.zeros((4, 4), np.uint8))  # wrong shape
            slot.put(frame)
            i += 1
            await asyncio.sleep(1 / self.fps)
        slot.close()


class ListSink:
    def __init__(self):
        self.msgs = []

    def send(self, msg, deadline_mono):
        self.msgs.append(msg)
        return True


async def test_actions_carry_latency_breakdown(make_settings):
    s = make_settings(sampler={"min_fps": 5, "max_fps": 20})
    sink = ListSink()
    p = StreamPipeline("default", PatternSource(n=30), create_policy(s), s, [sink])
    await asyncio.wait_for(p.run(), 10)
    assert sink.msgs, "no actions"
    for m in sink.msgs:
        ActionMessage.model_validate(m.model_dump())
        lat = m.latency_ms
        assert {"wait", "preprocess", "model", "decode", "policy", "total"} <= set(lat)
        assert lat["total"] >= lat["policy"] >= lat["model"] > 0
        assert m.deadline > m.frame_ts and m.published_ts >= m.frame_ts
    assert [m.seq for m in sink.msgs] == list(range(len(sink.msgs)))


async def test_bad_frames_are_counted_and_skipped(make_settings):
    s = make_settings(sampler={"min_fps": 50, "max_fps": 100})
    sink = ListSink()
    p = StreamPipeline("default", PatternSource(n=40, fps=50, bad_every=3), create_policy(s), s, [sink])
    await asyncio.wait_for(p.run(), 10)
    assert p.stats.bad_frames > 5 and sink.msgs


class SlowPolicy:
    name = "slow"

    def __init__(self, delay, hang_event=None):
        self.delay, self.calls, self.hang_event = delay, 0, hang_event

    def decide(self, frame, instruction):
        self.calls += 1
        if self.hang_event is not None:
            self.hang_event.wait(10)
        time.sleep(self.delay)
        from edge_vla.actions import Action
        return Decision(Action(type="wait"), "slow", {"model": self.delay * 1e3})

    def close(self):
        pass


async def test_slow_policy_skips_frames_newest_wins(make_settings):
    s = make_settings(sampler={"min_fps": 100, "max_fps": 100})
    sink = ListSink()
    policy = SlowPolicy(0.1)
    p = StreamPipeline("default", PatternSource(n=60, fps=60), policy, s, [sink])
    await asyncio.wait_for(p.run(), 10)
    # one second of frames, 0.1 s per decision: about 10 decisions, never 60
    assert 5 <= policy.calls <= 14
    assert p.slot.overwritten > 30
    # the wait in the slot stays below one frame interval plus scheduling noise
    waits = sorted(m.latency_ms["wait"] for m in sink.msgs)
    assert waits[len(waits) // 2] < 40


async def test_hung_inference_times_out_and_marks_unhealthy(make_settings):
    s = make_settings(model={"timeout_s": 0.2}, watchdog={"max_policy_age_s": 0.5},
                      sampler={"min_fps": 50, "max_fps": 50})
    release = threading.Event()
    policy = SlowPolicy(0.0, hang_event=release)
    p = StreamPipeline("default", PatternSource(n=None, fps=30), policy, s, [ListSink()])
    task = asyncio.create_task(p.run())
    await asyncio.sleep(1.0)
    ok, reason = p.health()
    assert not ok and "inference running" in reason
    assert p.stats.policy_timeouts == 1 and policy.calls == 1  # no pile-up behind the hung call
    assert p.stats.skipped_busy > 10
    release.set()
    await asyncio.sleep(0.5)
    assert policy.calls > 1 and p.health()[0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_policy_exception_is_counted(make_settings):
    class Broken(SlowPolicy):
        def decide(self, frame, instruction):
            self.calls += 1
            raise RuntimeError("boom")

    s = make_settings(sampler={"min_fps": 30, "max_fps": 30})
    p = StreamPipeline("default", PatternSource(n=20), Broken(0), s, [ListSink()])
    await asyncio.wait_for(p.run(), 10)
    assert p.stats.policy_errors >= 5 and p.stats.decisions == 0


async def test_actions_reach_a_subscriber_through_the_broker(make_settings, broker, collector):
    s = make_settings(broker=broker, sampler={"min_fps": 10, "max_fps": 10})
    link = MqttLink(s.mqtt, s.device_id)
    link.start()
    assert await link.wait_connected(5)
    p = StreamPipeline("default", PatternSource(n=30), create_policy(s), s, [link])
    await asyncio.wait_for(p.run(), 10)
    assert collector.wait_for(lambda m: len([x for x in m if x.topic.endswith("/action")]) == p.stats.actions_sent)
    for m in collector.on("/default/action"):
        data = json.loads(m.payload)
        ActionMessage.model_validate(data)
        assert m.t_wall <= data["deadline"]
    link.stop()


class MixedSource:
    """A screen, then what a broken camera or peer sends, then the screen again."""

    kind = "mixed"

    def __init__(self):
        from edge_vla.sim import SimWorld

        world = SimWorld(seed=3, width=1280, height=720, task="click_button")
        screen = np.ascontiguousarray(world.render())
        self.instruction = world.instruction
        rng = np.random.default_rng(0)
        self.images = [screen, screen.astype(np.float32), np.zeros((1, 1, 3), np.uint8),
                       rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), np.full((4320, 7680, 3), 255, np.uint8),
                       np.zeros((720, 1280, 3), np.uint8), screen]

    async def run(self, slot: FrameSlot) -> None:
        for i, img in enumerate(self.images):
            frame = make_frame(np.zeros((8, 8, 3), np.uint8), "default", i, source="mixed",
                               instruction=self.instruction)
            object.__setattr__(frame, "image", img)  # past make_frame's own check, as a buggy source would
            slot.put(frame)
            # every frame decided on: the next is put only once this one was taken (perception of an
            # 8K frame is not quick, and a busy machine makes any fixed pause too short)
            while not slot.drained:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.25)  # past the sampler's minimum interval
        slot.close()


async def test_the_perceiving_policy_survives_blank_noise_tiny_8k_and_wrong_dtype_frames(make_settings):
    from pathlib import Path

    bundle = Path(__file__).resolve().parent.parent / "models" / "edge-textmatch"
    s = make_settings(model={"path": str(bundle)}, sampler={"min_fps": 5, "max_fps": 30},
                      loop={"verify": False}, policy={"action_deadline_s": 5.0})
    sink = ListSink()
    p = StreamPipeline("default", MixedSource(), create_policy(s), s, [sink])
    await asyncio.wait_for(p.run(), 60)
    assert p.stats.bad_frames == 2 and p.stats.policy_errors == 0, p.stats
    assert len(sink.msgs) == 5 and all("perceive" in m.latency_ms for m in sink.msgs)
    assert sink.msgs[0].type == "click" and sink.msgs[-1].type == "click"  # the screen is read again after it all
