import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_vla.actions import (ACTION_TYPES, Action, ActionMessage, InvalidAction, crop_to_frame, to_normalized,
                              to_pixels, validate_action)


@pytest.mark.parametrize("data", [
    {"type": "click", "x": 0, "y": 1000},
    {"type": "drag", "x": 1, "y": 2, "x2": 3, "y2": 4},
    {"type": "type", "text": "hello"},
    {"type": "key", "key": "Enter"},
    {"type": "scroll", "dx": 0, "dy": -300},
    {"type": "wait"}, {"type": "reset"}, {"type": "done"},
])
def test_valid_actions(data):
    assert validate_action(data).fields() == data


@pytest.mark.parametrize("data, reason", [
    ({"type": "click", "x": 1001, "y": 5}, "x: Input should be less than or equal to 1000"),
    ({"type": "click", "x": -1, "y": 5}, "x: Input should be greater than or equal to 0"),
    ({"type": "click", "x": 5}, "click needs y"),
    ({"type": "drag", "x": 1, "y": 2}, "drag needs x2, y2"),
    ({"type": "type"}, "type needs text"),
    ({"type": "wait", "x": 3, "y": 3}, "wait does not take x, y"),
    ({"type": "teleport"}, "type: Input should be"),
    ({"type": "click", "x": "left", "y": 1}, "x: Input should be a valid integer"),
    ({"type": "click", "x": 1, "y": 1, "colour": "red"}, "colour: Extra inputs are not permitted"),
])
def test_invalid_actions_have_a_reason(data, reason):
    with pytest.raises(InvalidAction) as err:
        validate_action(data)
    assert reason in err.value.reason


def test_action_message_omits_unused_fields():
    msg = ActionMessage(type="click", x=1, y=2, seq=0, stream="default", frame_ts=1.0, published_ts=1.1,
                        deadline=2.0, model="m", latency_ms={"total": 3.0})
    text = msg.to_json()
    assert '"text"' not in text and '"dx"' not in text and '"v":1' in text
    assert set(ACTION_TYPES) >= {"click", "done"}


ODD_SIZES = [(1, 1), (2, 3), (3, 2), (7, 5), (333, 17), (390, 844), (1000, 1000), (1001, 999), (1280, 720),
             (1920, 1080), (3840, 2160), (1079, 1921)]


@pytest.mark.parametrize("w, h", ODD_SIZES)
def test_every_normalized_point_lands_on_the_image(w, h):
    for n in range(0, 1001):
        px, py = to_pixels(n, n, w, h)
        assert 0 <= px < w and 0 <= py < h


@pytest.mark.parametrize("w, h", [s for s in ODD_SIZES if max(s) <= 1000])
def test_pixel_round_trip_is_exact_up_to_1000px(w, h):
    for px, py in itertools.product(range(w), range(h)) if w * h < 5000 else zip(range(w), range(h)):
        assert to_pixels(*to_normalized(px, py, w, h), w, h) == (px, py)


@given(st.integers(1, 8000), st.integers(1, 8000), st.integers(0, 1000), st.integers(0, 1000))
def test_normalized_round_trip_error_is_below_one_unit_per_pixel(w, h, nx, ny):
    px, py = to_pixels(nx, ny, w, h)
    bx, by = to_normalized(px, py, w, h)
    # one pixel spans 1000/w units: going through pixels loses at most that much
    assert abs(bx - nx) <= max(1, 1000 / w) and abs(by - ny) <= max(1, 1000 / h)


def test_corners_and_centre():
    assert to_pixels(0, 0, 1920, 1080) == (0, 0)
    assert to_pixels(1000, 1000, 1920, 1080) == (1919, 1079)
    assert to_pixels(500, 500, 1920, 1080) == (960, 540)
    assert to_normalized(0, 0, 1920, 1080) == (0, 0)
    assert to_normalized(1919, 1079, 1920, 1080) == (1000, 1000)


def test_crop_to_frame_maps_back():
    assert crop_to_frame(0, 0, (200, 300, 400, 500)) == (200, 300)
    assert crop_to_frame(1000, 1000, (200, 300, 400, 500)) == (400, 500)
    assert crop_to_frame(500, 250, (200, 300, 400, 500)) == (300, 350)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        to_pixels(1, 1, 0, 10)
    with pytest.raises(Exception):
        Action(type="click", x=1, y=2, text="no")
