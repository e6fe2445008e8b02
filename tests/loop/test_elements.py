"""The element under a click, read from the pixels of real simulator screens."""

import random

import numpy as np

from edge_vla.actions import NORM
from edge_vla.loop.elements import element_at
from edge_vla.sim import THEMES, SimWorld

RESOLUTIONS = ((390, 844), (1280, 720), (1920, 1080), (3840, 2160))


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_a_click_anywhere_on_a_button_finds_that_button():
    rng = random.Random(0)
    clicks = found = right = same = pairs = 0
    for i in range(12):
        w, h = RESOLUTIONS[i % 4]
        world = SimWorld(seed=2 * i + 1, width=w, height=h, theme=THEMES[i % len(THEMES)], task="click_button")
        image = np.asarray(world.render())
        for el in world.elements:
            if el.kind != "button":
                continue
            truth = (el.box[0] * NORM / w, el.box[1] * NORM / h, el.box[2] * NORM / w, el.box[3] * NORM / h)
            boxes = []
            for _ in range(2):  # two points of one button: the same element both times
                px, py = rng.uniform(el.box[0] + 2, el.box[2] - 2), rng.uniform(el.box[1] + 2, el.box[3] - 2)
                area = element_at(image, int(px * NORM / w), int(py * NORM / h))
                clicks += 1
                if area is not None:
                    found += 1
                    right += _iou(area.box, truth) > 0.5
                    boxes.append(area.box)
            if len(boxes) == 2:
                pairs += 1
                same += boxes[0] == boxes[1]
    # buttons with no fill and no outline (ghost) have no box of their own: about one in five
    assert found >= 0.7 * clicks, (found, clicks)
    assert right >= 0.97 * found and same >= 0.95 * pairs, (right, found, same, pairs)


def test_page_background_and_a_photo_hold_no_element():
    world = SimWorld(seed=3, width=1280, height=720, theme="light", task="click_button")
    image = np.asarray(world.render())
    assert element_at(image, 5, 5) is None  # the page behind the card reaches the window's edge
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    assert element_at(noise, 500, 500) is None


def test_the_area_is_of_the_kind_clicked():
    image = np.full((360, 640, 3), 240, np.uint8)
    image[162:198, 250:390] = (30, 90, 200)  # a filled button
    area = element_at(image, 500, 500, "double_click")
    assert area is not None and area.kind == "double_click"
    assert area.holds("double_click", 400, 460) and not area.holds("click", 400, 460)
    assert not area.holds("double_click", 700, 500)
    x0, y0, x1, y1 = area.box
    assert x0 <= 250 * NORM // 640 < x0 + 20 and y0 <= 162 * NORM // 360 < y0 + 40
    assert x1 >= 390 * NORM // 640 > x1 - 20 and y1 >= 198 * NORM // 360 > y1 - 40
