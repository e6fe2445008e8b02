"""Closed-loop scenarios on the simulator, through the daemon and a real broker."""

from __future__ import annotations

import asyncio
import json

import pytest

from edge_vla.daemon import Daemon


def loop_settings(make_settings, broker, task, policy="oracle-blind", **loop):
    return make_settings(broker=broker, policy={"kind": policy},
                         source={"kind": "sim", "width": 800, "height": 600, "seed": 3, "task": task},
                         sampler={"min_fps": 5, "max_fps": 10},
                         loop={"verify_window_s": 0.6, "max_repeats": 2, "stuck_after_s": 1.5,
                               "escalate_every_s": 1.0, **loop})


async def start(settings, task):
    d = Daemon(settings)
    run = asyncio.create_task(d.run())
    for _ in range(200):
        if d.pipelines:
            break
        await asyncio.sleep(0.02)
    world = d.pipelines["default"].source.world
    assert world.task_kind == task
    return d, run, world


def parsed(collector, suffix):
    return [json.loads(m.payload) for m in collector.on(suffix)]


@pytest.mark.parametrize("avoid_after", [1, 2])
async def test_popup_hides_target_then_agent_recovers(make_settings, broker, collector, avoid_after):
    d, run, world = await start(loop_settings(make_settings, broker, "dismiss_popup_then_buy",
                                              avoid_after=avoid_after), "dismiss_popup_then_buy")
    assert world.task.dialog is not None and world.task.dialog.visible
    for _ in range(200):
        if world.success:
            break
        await asyncio.sleep(0.05)
    d.stop()
    await asyncio.wait_for(run, 10)
    assert world.success, "the task was not completed"
    actions = parsed(collector, "/default/action")
    verdicts = {v["action_id"]: v for v in parsed(collector, "/default/verdict")}
    # the blind click on the covered Buy button: no effect, and not repeated: the executor said it failed,
    # which is certain, so it is dead at once (a click with no visible effect takes loop.avoid_after)
    first = next(a for a in actions if a["type"] == "click")
    same = [a for a in actions if (a["type"], a.get("x"), a.get("y")) == (first["type"], first.get("x"), first.get("y"))]
    covered = [a for a in same if verdicts.get(a["id"], {}).get("result") == "unchanged"]
    assert len(covered) == 1, [(a["type"], a.get("x"), a.get("y"), verdicts.get(a["id"])) for a in actions]
    # then something else changed the screen (the pop-up closed) and the task completed
    assert any(v["result"] == "changed" for v in verdicts.values())
    assert not world.task.dialog.visible


async def test_frozen_ui_escalates_in_order(make_settings, broker, collector):
    d, run, world = await start(loop_settings(make_settings, broker, "click_button", policy="oracle"),
                                "click_button")
    with d.pipelines["default"].source.lock:
        world.frozen = True
    events = []
    for _ in range(300):
        events = [e for e in parsed(collector, "/events") if e.get("kind") == "watchdog"]
        if any(e["level"] == 3 for e in events):
            break
        await asyncio.sleep(0.05)
    d.stop()
    await asyncio.wait_for(run, 10)
    levels = [e["level"] for e in events]
    assert levels[:3] == [1, 2, 3], events
    times = [e["at"] for e in events[:3]]
    assert times == sorted(times) and times[2] - times[0] >= 1.0
    steps = [e["step"] for e in events[:3]]
    assert steps == ["alternative", "reset", "alarm"]
    actions = parsed(collector, "/default/action")
    assert any(a["type"] == "key" and a["model"] == "watchdog" for a in actions)
    assert any(a["type"] == "reset" and a["model"] == "watchdog" for a in actions)
