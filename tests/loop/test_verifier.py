import time

import numpy as np
import pytest

from edge_vla.actions import Action, ActionMessage, Feedback
from edge_vla.config import LoopConfig
from edge_vla.frames import grey_thumb, make_frame
from edge_vla.loop.verifier import Verifier
from edge_vla.loop.watchdog import StuckWatchdog, parse_action_spec, signature
from edge_vla.runtime.avoid import is_dead

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
        wd.on_state(grey_thumb(a if i % 2 else b))
    action, step = wd.review(Action(type="click", x=1, y=1))
    assert step is not None and "cycles" in step.reason


def test_waiting_on_a_screen_that_does_not_change_makes_wait_avoided():
    wd = StuckWatchdog(LoopConfig(wait_patience_s=4.0), now=0.0)
    still, other = grey_thumb(blank()), grey_thumb(np.zeros((H, W, 3), np.uint8))
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


# -- what stays dead: the element, while it looks the same ---------------------------------------

def screen(box=(30, 90, 200), toast=False, banner=True):
    img = blank()
    img[162:198, 250:390] = box  # one filled button, (390..609, 450..550) in 0..1000
    if toast:
        img[320:350, 20:200] = 40  # feedback far from the button
    if banner:
        img[20:70, 100:540] = (180, 40, 40)  # an error the app clears by itself
    return img


def act(wd, v, before, after, t, status="executed", **point):
    """One action decided on ``before``; the screen then shows ``after``; its verdicts go to the watchdog."""
    m = msg(**point) if point else msg(type_="key", key="Enter")
    v.track(frame(before, t), m, now=t)
    out = v.feedback(Feedback(v=1, action_id=m.id, status=status, ts=0), now=t)
    for k in (0.1, 5.0):  # a frame just after, then one past the verify window
        out += v.observe(frame(after, t + k), now=t + k)
    for verdict in out:
        wd.on_verdict(verdict, now=t)
    wd.on_state(grey_thumb(after))
    return [x.result for x in out]


def watching(img):
    cfg = LoopConfig()
    wd, v = StuckWatchdog(cfg, now=0.0), Verifier(cfg)
    wd.on_state(grey_thumb(img))
    return wd, v


def with_a_dead_button():
    s = screen()
    wd, v = watching(s)
    for t in (1.0, 10.0):  # pressed twice, nothing changed
        act(wd, v, s, s, t, x=500, y=500)
    return wd, v, s


def test_a_click_that_did_nothing_makes_the_whole_element_dead():
    s = screen()
    wd, v = watching(s)
    assert act(wd, v, s, s, 1.0, x=500, y=500) == ["unchanged"]
    assert wd.avoid() == frozenset()  # once may be a slow app
    act(wd, v, s, s, 10.0, x=420, y=470)  # another point of the same button: the same element
    (area,) = wd.avoid()
    assert is_dead(Action(type="click", x=590, y=540), wd.avoid())  # its far corner too
    assert not is_dead(Action(type="click", x=500, y=700), wd.avoid())  # not the page below it
    assert not is_dead(Action(type="double_click", x=500, y=500), wd.avoid())
    assert wd.dead_count(Action(type="click", x=450, y=520)) == 2


def test_an_element_stays_dead_while_it_looks_the_same():
    wd, v, s = with_a_dead_button()
    toast = screen(toast=True)
    assert act(wd, v, s, toast, 20.0) == ["changed"]  # another action changed another part of the screen
    assert len(wd.avoid()) == 1
    wd.on_state(grey_thumb(s))  # the toast went: back to a screen already seen
    assert len(wd.avoid()) == 1
    pressed = screen(box=(230, 230, 60))
    assert act(wd, v, s, pressed, 30.0) == ["changed"]  # something made the button look different
    assert wd.avoid() == frozenset()
    wd.on_state(grey_thumb(s))
    assert len(wd.avoid()) == 1  # it looks as it did when it did nothing


def test_a_screen_the_app_changed_by_itself_revives_what_did_nothing_but_not_what_failed():
    wd, v, s = with_a_dead_button()
    act(wd, v, s, s, 20.0, status="failed", x=100, y=900)  # the executor: nothing clickable there
    assert len(wd.avoid()) == 2
    wd.on_state(grey_thumb(screen(banner=False)))  # the validation error cleared: the button may work now
    assert wd.avoid() == {signature(Action(type="click", x=100, y=900))}  # a live chart would clear it for ever


def test_an_action_that_leads_back_to_a_screen_already_seen_is_dead_at_once():
    off, on = screen(), screen(box=(30, 160, 60))  # a toggle: clicking it flips its colour
    wd, v = watching(off)
    assert act(wd, v, off, on, 1.0, x=500, y=500) == ["changed"]
    assert wd.avoid() == frozenset()  # a new screen: progress
    assert act(wd, v, on, off, 2.0, x=500, y=500) == ["changed"]  # and back
    assert wd.avoid() == frozenset()  # dead where it was clicked (on), not here: it looks different
    act(wd, v, off, on, 3.0, x=520, y=490)
    assert len(wd.avoid()) == 1 and is_dead(Action(type="click", x=450, y=520), wd.avoid())
    assert wd.level == 0  # no escalation: the model simply takes its next-best action


def test_an_executor_failure_is_dead_at_once():
    s = screen()
    wd, v = watching(s)
    assert act(wd, v, s, s, 1.0, status="failed", x=100, y=900) == ["unchanged"]
    assert wd.avoid() == {signature(Action(type="click", x=100, y=900))}  # page background: its cell
