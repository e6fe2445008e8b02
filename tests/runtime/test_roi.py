"""RoI crops: the crop is the exact normalized box, and crop coordinates map back to the full frame."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vla.actions import Action, to_normalized, to_pixels
from edge_vla.runtime.roi import crop_box, crop_view, map_action


@pytest.mark.parametrize("w,h", [(1280, 720), (1920, 1080)])
def test_crop_maps_back_to_the_same_pixel(w, h):
    rng = np.random.default_rng(0)
    for _ in range(50):
        fx, fy = int(rng.integers(0, 900)), int(rng.integers(0, 900))
        box = crop_box((fx, fy, fx + 40, fy + 30), w, h, 0.35)
        assert 0 <= box[0] < box[2] <= 1000 and 0 <= box[1] < box[3] <= 1000
        # a target pixel inside the crop: its crop-normalized coordinate maps back to it
        px = int(rng.uniform(box[0] * w / 1000 + 1, box[2] * w / 1000 - 1))
        py = int(rng.uniform(box[1] * h / 1000 + 1, box[3] * h / 1000 - 1))
        cw = (box[2] - box[0]) * w / 1000
        ch = (box[3] - box[1]) * h / 1000
        nx = int(round((px + 0.5 - box[0] * w / 1000) * 1000 / cw))
        ny = int(round((py + 0.5 - box[1] * h / 1000) * 1000 / ch))
        back = map_action(Action(type="click", x=nx, y=ny), box)
        bx, by = to_pixels(back.x, back.y, w, h)
        assert abs(bx - px) <= 1 and abs(by - py) <= 1


def test_crop_view_is_the_box_region():
    img = np.zeros((720, 1280, 3), np.uint8)
    img[360:370, 640:650] = 255  # a 10x10 white square at the centre
    box = (450, 450, 550, 550)  # 128 x 72 px around it
    v = crop_view(img, box, 64)[0].mean(0)
    ys, xs = np.nonzero(v > 0.5)
    cy, cx = ys.mean(), xs.mean()
    nx, ny = cx / 64 * 1000, cy / 64 * 1000
    full = map_action(Action(type="click", x=int(round(nx)), y=int(round(ny))), box)
    assert abs(full.x - to_normalized(644.5, 0, 1280, 720)[0]) <= 2
    assert abs(full.y - to_normalized(0, 364.5, 1280, 720)[1]) <= 3


def test_with_clicks_dead_a_re_aim_at_the_crop_already_shown_is_dead_too():
    from types import SimpleNamespace

    from edge_vla.runtime.grammar import ActionGrammar, ActionVocab
    from edge_vla.runtime.roi import RoiState

    vocab = ActionVocab(start=300, bins=200, focus=True)
    grammar = ActionGrammar(vocab)
    state = RoiState(SimpleNamespace(grammar=grammar, cfg=SimpleNamespace(roi_crop_scale=0.35)))

    def focus(x0, y0, x1, y1):  # a FOCUS box in full-frame bins (5 units each)
        return [vocab.focus_id] + [vocab.bin_id(b) for b in (x0, y0, x1, y1)] + [vocab.end_id]

    shown = crop_box(grammar.to_decoded(focus(80, 80, 90, 90)).focus_box, 1280, 720, 0.35)
    clicks_dead = lambda tokens: tokens[0] == vocab.type_id("click")  # noqa: E731
    dead = state._or_same_aim(clicks_dead, shown, 1280, 720)
    assert dead([vocab.type_id("click"), vocab.bin_id(10), vocab.bin_id(10), vocab.end_id])
    assert dead(focus(81, 79, 91, 91))  # the same crop again: it would find the same dead clicks
    assert not dead(focus(150, 20, 160, 30))  # elsewhere: a new look
    assert not dead([vocab.type_id("wait"), vocab.end_id])
