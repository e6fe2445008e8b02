import time

import numpy as np
import pytest

from edge_vla.actions import Action, ActionMessage
from edge_vla.config import LoopConfig
from edge_vla.frames import make_frame
from edge_vla.loop.verifier import Verifier
from edge_vla.loop.watchdog import StuckWatchdog, parse_action_spec, screen_state, signature
from edge_vla.sampler import grey_thumb
from edge_vla.mqtt import Feedback

W, H = 640, 360


def frame(img, t):
    return make_frame(img, "s", 0, t_capture=t)


def msg(type_="click", **kw):
    fields = {"x": 500, "y": 500} if type_ == "click" else {}
    fields.update(kw)
    return ActionMessage(type=type_, seq=0, stream="s", frame_ts=0, published_ts=0, deadline=1, model="m",
                         latency_ms={}, **fields)


def blank():
    return np.full((H, W, 3), 200, np.uint8)


def test_change_at_the_point_is_changed_with_latency():
    v = Verifier(LoopConfig(verify_delay_s=0.1))
    t0 = time.monotonic()
    m = msg()
    v.track(frame(blank(), t0), m, now=t0)
    assert v.observe(frame(blank(), t0 + 0.05), now=t0 + 0.05) == []  # before the delay
    img = blank()
    img[170:190, 310:330] = 0  # a small change right at (500, 500)
    out = v.observe(frame(img, t0 + 0.2), now=t0 + 0.2)
    assert [x.result for x in out] == ["changed"] and out[0].latency_ms == pytest.approx(100, abs=1)


def test_small_change_elsewhere_is_unchanged():
    v = Verifier(LoopConfig(verify_delay_s=0.0, verify_window_s=0.5))
    t0 = time.monotonic()
    v.track(frame(blank(), t0), msg(x=100, y=100), now=t0)
    img = blank()
    img[300:310, 600:610] = 0  # a blinking caret far away
    assert v.observe(frame(img, t0 + 0.1), now=t0 + 0.1) == []
    out = v.observe(frame(img, t0 + 0.6), now=t0 + 0.6)
    assert [x.result for x in out] == ["unchanged"]


def test_big_change_anywhere_is_changed():
    v = Verifier(LoopConfig(verify_delay_s=0.0))
    t0 = time.monotonic()
    v.track(frame(blank(), t0), msg(type_="key", key="Enter"), now=t0)
    out = v.observe(frame(np.zeros((H, W, 3), np.uint8), t0 + 0.1), now=t0 + 0.1)
    assert out[0].result == "changed" and out[0].changed_fraction > 0.9


def test_scroll_inside_a_list_and_typing_into_the_clicked_field_are_seen():
    """Actions with no point of their own: a list that scrolled (a few per cent of the screen) and text
    typed where the last click was are changes; a caret-sized blink is not."""
    v = Verifier(LoopConfig(verify_delay_s=0.0, verify_window_s=0.5))
    t0 = time.monotonic()
    listed = blank()
    listed[100:160, 40:140:2] = 0  # striped rows of a list
    v.track(frame(listed, t0), msg(type_="scroll", dx=0, dy=200), now=t0)
    scrolled = blank()
    scrolled[110:170, 40:140:2] = 0
    changed = np.abs(grey_thumb(scrolled) - grey_thumb(listed)) > 0.08
    assert changed.mean() < LoopConfig().global_fraction  # too small for the whole-frame test alone
    assert [x.result for x in v.observe(frame(scrolled, t0 + 0.1), now=t0 + 0.1)] == ["changed"]

    v.track(frame(blank(), t0), msg(x=250, y=750), now=t0)  # click a field at (160, 270) px
    v.observe(frame(blank(), t0 + 0.6), now=t0 + 0.6)
    v.track(frame(blank(), t0 + 1), msg(type_="type", text="hi"), now=t0 + 1)
    typed = blank()
    typed[262:276, 150:172] = 0  # the text in that field
    assert [x.result for x in v.observe(frame(typed, t0 + 1.1), now=t0 + 1.1)] == ["changed"]
    v.track(frame(blank(), t0 + 2), msg(type_="key", key="Enter"), now=t0 + 2)
    caret = blank()
    caret[20:30, 600:602] = 0
    assert v.observe(frame(caret, t0 + 2.1), now=t0 + 2.1) == []
    assert [x.result for x in v.observe(frame(caret, t0 + 2.6), now=t0 + 2.6)] == ["unchanged"]


def test_executor_feedback_drives_the_verdict():
    v = Verifier(LoopConfig(verify_window_s=0.5))
    t0 = time.monotonic()
    a, b, c = msg(), msg(), msg()
    for m in (a, b, c):
        v.track(frame(blank(), t0), m, now=t0)
    out = v.feedback(Feedback(v=1, action_id=a.id, status="rejected", ts=0), now=t0)
    assert [(x.action_id, x.result) for x in out] == [(a.id, "unchanged")]
    v.feedback(Feedback(v=1, action_id=b.id, status="executed", ts=0), now=t0 + 0.1)
    out = v.observe(frame(blank(), t0 + 0.7), now=t0 + 0.7)
    assert {x.action_id: x.result for x in out} == {b.id: "unchanged", c.id: "timeout"}


def test_wait_and_done_are_not_verified():
    v = Verifier(LoopConfig())
    v.track(frame(blank(), 0.0), msg(type_="wait"))
    assert not v.pending


def test_watchdog_alternative_then_reset_then_alarm():
    cfg = LoopConfig(max_repeats=2, stuck_after_s=1.0, escalate_every_s=1.0)
    t = 100.0
    wd = StuckWatchdog(cfg, now=t)
    click = Action(type="click", x=10, y=10)
    v = Verifier(cfg)
    for i in range(2):
        m = msg(x=10, y=10)
        v.track(frame(blank(), t), m, now=t)
        for verdict in v.feedback(Feedback(v=1, action_id=m.id, status="failed", ts=0), now=t):
            wd.on_verdict(verdict, now=t)
    action, step = wd.review(click, now=t + 0.1)
    assert action == parse_action_spec("key:Escape") and step.level == 1
    action, step = wd.review(click, now=t + 0.5)
    assert step is None  # not yet due for the next step
    action, step = wd.review(click, now=t + 1.2)
    assert action.type == "reset" and step.kind == "reset"
    action, step = wd.review(click, now=t + 2.3)
    assert step.kind == "alarm" and [s.level for s in wd.history] == [1, 2, 3]


def test_watchdog_sees_a_cycle():
    wd = StuckWatchdog(LoopConfig())
    a, b = blank(), np.zeros((H, W, 3), np.uint8)
    for i in range(12):
        wd.on_state(screen_state(grey_thumb(a if i % 2 else b)))
    action, step = wd.review(Action(type="click", x=1, y=1))
    assert step is not None and "cycles" in step.reason


def test_waiting_on_a_screen_that_does_not_change_makes_wait_avoided():
    wd = StuckWatchdog(LoopConfig(wait_patience_s=4.0), now=0.0)
    still, other = screen_state(grey_thumb(blank())), screen_state(grey_thumb(np.zeros((H, W, 3), np.uint8)))
    wait = Action(type="wait")
    for t in (0.0, 1.0, 3.9):
        wd.on_state(still)
        assert wd.review(wait, now=t) == (wait, None) and wd.avoid() == frozenset()
    wd.on_state(still)
    wd.review(wait, now=4.0)
    assert wd.avoid() == {signature(wait)}  # the model now takes its best other action
    assert wd.review(Action(type="click", x=5, y=5), now=4.5)[1] is None  # no escalation for that
    wd.on_state(other)  # the screen changed: what it waited for may be there
    assert wd.avoid() == frozenset()
    for t in (10.0, 12.0):  # waiting again starts a new count; a click in between resets it too
        wd.on_state(other)
        wd.review(wait, now=t)
    wd.review(Action(type="click", x=5, y=5), now=13.0)
    wd.on_state(other)
    wd.review(wait, now=14.5)
    assert wd.avoid() == frozenset()


def test_action_specs():
    assert parse_action_spec("scroll:0:-300") == Action(type="scroll", dx=0, dy=-300)
    assert parse_action_spec("event") is None
    with pytest.raises(ValueError):
        parse_action_spec("teleport:3")
    assert signature(Action(type="click", x=10, y=10)) == signature(Action(type="click", x=20, y=24))
    assert signature(Action(type="type", text="alice")) == signature(Action(type="type", text="HIP i"))
