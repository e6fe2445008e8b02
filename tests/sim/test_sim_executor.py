"""SimExecutor: contract payloads in, feedback dicts out; garbage is rejected, never raised."""

from __future__ import annotations

import json
import time

import pytest

from edge_vla.actions import ActionMessage
from edge_vla.sim import SimExecutor, SimWorld

GARBAGE = [
    None, 5, 3.5, [], ["click"], "not json", b"\xff\xfe", "[1, 2]", {},
    {"type": "click", "x": 5, "y": 5},  # no id
    {"id": 7, "type": "click", "x": 5, "y": 5},  # id of the wrong type
    {"id": "", "type": "click", "x": 5, "y": 5},
    {"id": "a"},  # no type
    {"id": "a", "type": "fly"},
    {"id": "a", "type": ["click"]},
    {"id": "a", "type": "click"},  # missing coordinates
    {"id": "a", "type": "click", "x": 5},
    {"id": "a", "type": "click", "x": 1001, "y": 5},
    {"id": "a", "type": "click", "x": -1, "y": 5},
    {"id": "a", "type": "click", "x": "abc", "y": 5},
    {"id": "a", "type": "click", "x": 5.5, "y": 5},
    {"id": "a", "type": "click", "x": {"v": 1}, "y": 5},
    {"id": "a", "type": "click", "x": 5, "y": 5, "text": "stray"},
    {"id": "a", "type": "type", "text": 123},
    {"id": "a", "type": "type", "text": "x" * 10_000},
    {"id": "a", "type": "key", "key": ""},
    {"id": "a", "type": "scroll", "dx": 0, "dy": 99_999},
    {"id": "a", "type": "drag", "x": 1, "y": 1, "x2": 9, "y2": 9},  # valid, but the sim cannot drag
    {"id": "a", "type": "right_click", "x": 1, "y": 1},
]


def check_feedback(fb: dict, status: str) -> None:
    assert set(fb) == {"v", "action_id", "status", "ts", "detail"}
    assert fb["v"] == 1 and fb["status"] == status, fb
    assert isinstance(fb["action_id"], str) and isinstance(fb["detail"], str)
    assert abs(fb["ts"] - time.time()) < 60
    json.dumps(fb)


@pytest.mark.parametrize("payload", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_rejected_without_exceptions(payload: object) -> None:
    ex = SimExecutor(SimWorld(seed=1, width=640, height=480))
    fb = ex.handle(payload)
    check_feedback(fb, "rejected")
    assert fb["detail"]
    assert ex.world.steps == 0


def test_action_id_is_echoed_and_json_text_accepted() -> None:
    ex = SimExecutor(SimWorld(seed=1, width=640, height=480))
    assert ex.handle({"id": "abc", "type": "fly"})["action_id"] == "abc"
    fb = ex.handle('{"id": "j", "type": "wait", "seq": 3, "future_field": true}')  # raw JSON is fine too
    check_feedback(fb, "executed")
    assert fb["action_id"] == "j"


def message(world: SimWorld, seq: int) -> dict:
    """A full contract payload for the oracle's action, metadata included."""
    now = time.time()
    msg = ActionMessage(**world.oracle().fields(), seq=seq, stream="default", frame_ts=now,
                        published_ts=now, deadline=now + 2, model="oracle", latency_ms={"total": 1.0})
    return json.loads(msg.to_json())


def test_contract_payloads_drive_tasks_and_auto_next() -> None:
    goals: list[str] = []
    world = SimWorld(seed=3, width=800, height=600)
    ex = SimExecutor(world, settle_s=0.5, on_new_task=goals.append)
    first = world.instruction
    seq = 0
    while ex.tasks_completed < 3 and seq < 200:
        payload = message(world, seq)
        fb = ex.handle(payload)
        check_feedback(fb, "executed")
        assert fb["action_id"] == payload["id"]
        ex.advance(0.1)
        seq += 1
    assert ex.tasks_completed == 3
    assert len(ex.steps_per_task) == 3 and all(n >= 1 for n in ex.steps_per_task)
    assert goals and goals[0] != first and goals[-1] == world.instruction
    assert ex.counts["executed"] == seq


def test_no_auto_next_keeps_the_task_and_failures_are_reported() -> None:
    world = SimWorld(seed=2, width=800, height=600, task="click_button")
    ex = SimExecutor(world, auto_next=False)
    fb = ex.handle({"id": "miss", "type": "click", "x": 0, "y": 999})
    check_feedback(fb, "failed")
    fb = ex.handle(message(world, 1))
    check_feedback(fb, "executed")
    assert world.success and ex.tasks_completed == 1
    instruction = world.instruction
    ex.advance(10.0)
    assert world.instruction == instruction and ex.tasks_completed == 1


def test_callback_errors_do_not_escape() -> None:
    def boom(_: str) -> None:
        raise RuntimeError("publish failed")

    world = SimWorld(seed=4, width=640, height=480, task="checkbox")
    ex = SimExecutor(world, settle_s=0.0, on_new_task=boom)
    ex.handle(message(world, 0))
    ex.advance(0.1)
    assert ex.tasks_completed == 1 and not world.success


def test_world_advance_alone_rolls_tasks_over() -> None:
    """A video source drives the clock with world.advance; the executor still moves on."""
    goals: list[str] = []
    world = SimWorld(seed=5, width=640, height=480, task="click_button")
    ex = SimExecutor(world, settle_s=1.0, on_new_task=goals.append)
    ex.handle(message(world, 0))
    assert world.success
    world.advance(0.5)
    assert not goals
    world.advance(0.6)
    assert len(goals) == 1 and goals[0] == world.instruction and not world.success
    assert ex.tasks_completed == 1 and ex.steps_per_task == [1] and world.steps == 0
