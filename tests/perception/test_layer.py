"""The element layer: incremental re-reads, stable ids, the recognition cache, bad frames."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vla.perception.layer import Perceiver
from edge_vla.perception.match import norm
from edge_vla.perception.text import TextReader
from edge_vla.sim import SimWorld


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(threads=2)


def frame(world: SimWorld) -> np.ndarray:
    return np.ascontiguousarray(world.render())


def test_an_unchanged_frame_costs_nothing_and_a_local_change_rereads_only_it(reader):
    world = SimWorld(seed=5, width=1280, height=720, task="checkbox")
    p = Perceiver(reader)
    first = p.perceive(frame(world))
    assert first.stats["recognised"] > 5
    again = p.perceive(frame(world).copy())
    assert again.stats == {**again.stats, "regions": 0, "recognised": 0}
    assert again.elements == first.elements
    # tick the target's box: only that area changes; the rest of the layer keeps its ids
    world.execute(world.oracle())
    after = p.perceive(frame(world))
    assert 1 <= after.stats["regions"] <= 3 and after.stats["recognised"] <= 3
    kept = {e.id for e in first.elements} & {e.id for e in after.elements}
    assert len(kept) >= len(first.elements) - 4
    by_id = {e.id: e for e in first.elements}
    assert all(by_id[e.id].text == e.text for e in after.elements if e.id in by_id)


def test_a_new_screen_is_read_whole_and_recognised_lines_are_cached_by_content(reader):
    world = SimWorld(seed=7, width=1280, height=720, task="click_button")
    p = Perceiver(reader)
    a = p.perceive(frame(world))
    labels = {norm(e.label) for e in world.elements if e.kind == "button"}
    assert labels <= {norm(e.text) for e in a.elements} | labels  # shape of the check below
    assert sum(norm(e.text) in labels for e in a.elements) >= 0.8 * len(labels)
    p.reset()
    b = p.perceive(frame(world))  # same pixels after a reset: detection again, recognition from the cache
    assert b.stats["recognised"] == 0 and [e.text for e in b.elements if e.kind == "text"] == \
        [e.text for e in a.elements if e.kind == "text"]


def test_the_layer_says_how_old_it_is(reader):
    world = SimWorld(seed=9, width=640, height=480)
    layer = Perceiver(reader).perceive(frame(world), t=100.0)
    assert layer.age_s(now=100.25) == pytest.approx(0.25)


@pytest.mark.parametrize("image", [
    np.zeros((720, 1280, 3), np.uint8),
    np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    np.zeros((1, 1, 3), np.uint8),
    np.zeros((20, 4000, 3), np.uint8),
])
def test_blank_noise_and_odd_sizes_give_a_layer_not_an_error(reader, image):
    p = Perceiver(reader)
    layer = p.perceive(image)
    assert (layer.width, layer.height) == (image.shape[1], image.shape[0])
    p.perceive(np.ascontiguousarray(image[::-1]))  # and a change after it


def test_a_smaller_frame_after_a_larger_one_keeps_nothing_of_it(reader):
    p = Perceiver(reader)
    p.perceive(frame(SimWorld(seed=1, width=1920, height=1080, task="click_button")))
    small = p.perceive(frame(SimWorld(seed=2, width=640, height=480, task="checkbox")))
    assert all(e.box[2] <= 640 and e.box[3] <= 480 for e in small.elements)


def test_text_typed_into_a_focused_field_is_read_at_once_not_throttled_as_live(reader):
    world = SimWorld(seed=3, width=1280, height=720, task="fill_and_submit")
    p = Perceiver(reader)
    t = 0.0
    p.perceive(frame(world), t=t)
    world.execute(world.oracle())  # focus the field: its outline changes, a caret starts blinking
    for _ in range(3):
        t += 0.3
        world.advance(0.3)
        p.perceive(frame(world), t=t)
    step = world.oracle()
    assert step.type == "type", step
    world.execute(step)
    t += 0.3
    layer = p.perceive(frame(world), t=t)
    assert norm(step.text) in {norm(e.text) for e in layer.elements}, [e.text for e in layer.elements]


def test_a_ticking_chart_is_reread_every_few_seconds_not_every_frame(reader):
    world = SimWorld(seed=3, width=1280, height=720, task="dismiss_popup_then_buy")
    p = Perceiver(reader)
    t, regions = 0.0, []
    for _ in range(14):
        regions.append(p.perceive(frame(world), t=t).stats["regions"])
        world.advance(0.3)
        t += 0.3
    assert sum(r > 0 for r in regions[8:]) <= 4, regions  # live once found: re-read at most every 2 s


def test_the_line_cache_stays_bounded_and_a_full_cache_still_answers(reader, monkeypatch):
    import edge_vla.perception.layer as layer_module

    monkeypatch.setattr(layer_module, "CACHE_LINES", 4)  # smaller than one screen's lines
    p = Perceiver(reader)
    for seed in (1, 2):
        layer = p.perceive(frame(SimWorld(seed=seed, width=1280, height=720, task="click_button")))
        assert sum(bool(e.text) for e in layer.elements) > 4
    assert len(p._cache) == 4
