"""The OCR reader on real simulator frames: pretrained weights from the installed wheel, our own pre/post."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vla.perception.match import norm
from edge_vla.perception.text import PerceptionWeightsError, TextReader, sha256, weight_files
from edge_vla.sim import SimWorld


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(threads=2)


@pytest.mark.parametrize("size", [(1280, 720), (390, 844), (3840, 2160)])
def test_reads_the_labels_of_a_screen(reader, size):
    world = SimWorld(seed=11, width=size[0], height=size[1], task="click_button")
    image = np.ascontiguousarray(world.render())
    read = {norm(line.text) for line in reader.read(image)}
    labels = {norm(e.label) for e in world.elements if e.kind == "button" and e.label}
    found = sum(1 for label in labels if label in read)
    assert labels and found >= 0.8 * len(labels), (labels, read)


def test_lines_come_back_in_frame_pixels_inside_a_region(reader):
    world = SimWorld(seed=3, width=1280, height=720, task="checkbox")
    image = np.ascontiguousarray(world.render())
    region = (0, 0, 640, 720)
    boxes = reader.detect(image, region)
    assert boxes and all(0 <= b[0] < b[2] <= 640 + 8 and 0 <= b[1] < b[3] <= 720 for b in boxes)
    assert len(boxes) < len(reader.detect(image))


def test_blank_noise_and_tiny_frames_read_nothing_and_do_not_fail(reader):
    rng = np.random.default_rng(0)
    assert reader.read(np.full((720, 1280, 3), 255, np.uint8)) == []
    reader.read(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))  # whatever it reads, it returns
    assert reader.read(np.zeros((1, 1, 3), np.uint8)) == []
    assert reader.recognize([]) == []


def test_weights_that_are_not_the_pinned_ones_are_refused_by_name(reader):
    det = weight_files()["det"]
    with pytest.raises(PerceptionWeightsError, match=det.name):
        TextReader(hashes={"det": "0" * 64, "rec": sha256(weight_files()["rec"])})
