"""Golden runs on the simulator: regression detection and localisation, retrieval, replay."""

from __future__ import annotations

import random

import pytest

from edge_vla.frames import make_frame
from edge_vla.memory.golden import SimScenario, record_frames
from edge_vla.memory.regress import GoldenRun, LiveRegressor, regress_frames
from edge_vla.memory.retrieval import RecallPolicy, Retriever
from edge_vla.memory.store import MemoryStore
from edge_vla.policy import Decision
from edge_vla.policy.replay import ReplayPolicy
from edge_vla.actions import Action
from edge_vla.sim import SimWorld
from edge_vla.sim.defects import Clock, compress, hide_dialog, inject_defect

W, H = 640, 360


def iou(a, b):
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scenario(live: bool, at=None, seed=11, task="click_button"):
    def setup(world):
        hide_dialog(world)
        Clock(world, 30000 if not live else 41234)
    return SimScenario(seed=seed, width=W, height=H, task=task, seconds=3.0, fps=5, action_times=(1.5,),
                       phase=0.07 if live else 0.0, setup=setup, at=at or {},
                       post=(lambda im: compress(im, 60)) if live else None)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    st = MemoryStore(tmp_path_factory.mktemp("g") / "m.db")
    record_frames(st, "g", scenario(False).frames())
    yield st, GoldenRun.load(st, "g")
    st.close()


def test_benign_variation_is_quiet(golden):
    _, g = golden
    rep = regress_frames(g, (f.image for f in scenario(True).frames()))
    assert rep["regressions"] == 0, rep["first_regression"]


@pytest.mark.parametrize("kind", ["missing_element", "changed_color", "overlapping_popup"])
def test_defects_are_found_and_localised(golden, kind):
    _, g = golden
    got = {}

    def inject(world):
        got["d"] = inject_defect(world, kind, random.Random(3))
    sc = scenario(True, at={0.5: inject})
    reg = LiveRegressor(g)
    reports = [reg.step(f.image, ts=f.ts) for f in sc.frames()]
    d = got["d"]
    assert d is not None
    hit = next(r for r in reports if r.regression)
    truth = [(b[0] * 1000 / W, b[1] * 1000 / H, b[2] * 1000 / W, b[3] * 1000 / H) for b in d.truth]
    assert max(iou(c.box, t) for c in hit.changes for t in truth) >= 0.5, (hit.changes, truth)
    assert all(c.tile_boxes for c in hit.changes)


class Waiter:
    name = "waiter"

    def decide(self, frame, instruction):
        return Decision(action=Action(type="wait"), model=self.name)

    def close(self):
        pass


def test_retrieval_changes_the_decision_where_it_should(golden):
    st, g = golden
    policy = RecallPolicy(Waiter(), Retriever(st))
    world = SimWorld(seed=11, width=W, height=H, task="click_button")
    hide_dialog(world)
    Clock(world, 30000)
    acted = next(f for f in g.frames if f.actions)
    # the same screen, remembered with an executed click for this goal: memory proposes it
    same = make_frame(world.render(), "default", 1, instruction=world.instruction)
    d = policy.decide(same, world.instruction)
    assert d.action.type == "click" and d.model == "waiter+memory"
    assert (d.action.x, d.action.y) == (acted.actions[0]["x"], acted.actions[0]["y"])
    assert "Remembered screens" in Retriever(st).context(same.image, world.instruction).prompt()
    # a screen memory has not seen: the base policy decides
    other = SimWorld(seed=99, width=W, height=H, task="checkbox")
    assert policy.decide(make_frame(other.render(), "default", 2), other.instruction).action.type == "wait"
    # the same screen, but another goal: not the remembered action
    assert policy.decide(same, "tick the newsletter box").action.type == "wait"


def test_replay_policy_repeats_a_golden_run(tmp_path, make_settings):
    st = MemoryStore(tmp_path / "m.db")
    sc = SimScenario(seed=4, width=W, height=H, task="fill_and_submit", seconds=6.0, fps=5,
                     action_times=(1.0, 2.0, 3.0, 4.0), setup=hide_dialog)
    record_frames(st, "form", sc.frames())
    assert sc.world.success  # the golden run did the task
    st.close()
    settings = make_settings(memory={"path": str(tmp_path / "m.db"), "replay_run": "form"}, policy={"kind": "replay"})
    from edge_vla.policy import create_policy

    policy = create_policy(settings)
    assert isinstance(policy, ReplayPolicy) and len(policy.steps) == 4
    world = SimWorld(seed=4, width=W, height=H, task="fill_and_submit")
    hide_dialog(world)
    for k in range(60):
        world.advance(0.2)
        a = policy.decide(make_frame(world.render(), "default", k), world.instruction).action
        if a.type == "done":
            break
        world.execute(a)
    assert world.success and a.type == "done"
    # the golden oracle's 4th action was "done": three verified steps, then done
    assert [a.type for _, a in policy.steps][-1] == "done"
    assert policy.stats.verified == 3 and policy.stats.resets == 0


def test_replay_needs_a_run(make_settings, tmp_path):
    from edge_vla.policy import create_policy

    with pytest.raises(ValueError, match="memory.replay_run"):
        create_policy(make_settings(policy={"kind": "replay"}, memory={"path": str(tmp_path / "m.db")}))
