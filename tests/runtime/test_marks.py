"""Set-of-marks runtimes: the textmatch baseline and the decode every marks model goes through."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_vla.actions import to_pixels
from edge_vla.config import ModelConfig
from edge_vla.perception.layer import ElementLayer, UIElement
from edge_vla.runtime.bundle import BundleError
from edge_vla.runtime.families import load_runtime
from edge_vla.runtime.avoid import is_dead
from edge_vla.runtime.marks import TYPES, decode, point_of
from edge_vla.sim import SimWorld
from edge_vla.sim.scene import inside

ROOT = Path(__file__).resolve().parents[2]
TEXTMATCH = ROOT / "models" / "edge-textmatch"
EDGE_VLA = str(Path(sys.executable).parent / "edge-vla")


@pytest.fixture(scope="module")
def baseline():
    return load_runtime(ModelConfig(path=TEXTMATCH))


def test_the_baseline_clicks_the_named_button_and_says_which_element(baseline):
    hits = 0
    for seed in (1, 3, 5, 7, 9):
        world = SimWorld(seed=seed, width=1280, height=720, task="click_button")
        action, stages = baseline.infer(np.ascontiguousarray(world.render()), world.instruction)
        assert stages["perceive"] > 0
        if action.type == "click":
            px = to_pixels(action.x, action.y, 1280, 720)
            hits += inside(world.target.box, *px)
            t = action.target
            assert t is not None and t.box[0] <= action.x <= t.box[2] and t.box[1] <= action.y <= t.box[3]
    assert hits >= 4


def test_streams_that_come_and_go_are_forgotten_beyond_a_bound(baseline):
    from edge_vla.runtime.marks import MAX_STREAMS

    image = np.full((64, 64, 3), 255, np.uint8)
    for i in range(MAX_STREAMS + 5):
        baseline.infer(image, "Click Save", stream=f"peer-{i}")
    assert len(baseline.streams) == MAX_STREAMS and f"peer-{MAX_STREAMS + 4}" in baseline.streams
    assert "peer-0" not in baseline.streams


def test_streams_keep_their_own_layer(baseline):
    a = SimWorld(seed=1, width=640, height=480, task="click_button")
    b = SimWorld(seed=2, width=800, height=600, task="checkbox")
    baseline.infer(np.ascontiguousarray(a.render()), a.instruction, stream="a")
    baseline.infer(np.ascontiguousarray(b.render()), b.instruction, stream="b")
    assert baseline.state("a").layer.width == 640 and baseline.state("b").layer.width == 800


def _tampered(tmp_path: Path, edit) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(TEXTMATCH, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_perception_weights_that_do_not_match_the_manifest_are_a_bundle_error(tmp_path):
    def edit(m):
        m["inputs"]["perception"]["files"]["rec"]["sha256"] = "1" * 64

    with pytest.raises(BundleError, match="ch_PP-OCRv4_rec_infer.onnx"):
        load_runtime(ModelConfig(path=_tampered(tmp_path, edit)))


def test_a_bundle_that_pins_no_perception_weights_is_refused(tmp_path):
    with pytest.raises(BundleError, match="inputs.perception"):
        load_runtime(ModelConfig(path=_tampered(tmp_path, lambda m: m["inputs"].pop("perception"))))


def test_predict_prints_the_elements_and_exits_78_on_tampered_weights(tmp_path):
    world = SimWorld(seed=3, width=1280, height=720, task="click_button")
    png = tmp_path / "screen.png"
    Image.fromarray(world.render()).save(png)
    r = subprocess.run([EDGE_VLA, "predict", "--model", str(TEXTMATCH), "--image", str(png),
                        "--instruction", world.instruction, "--elements"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["type"] == "click" and "perceive" in out["latency_ms"]
    assert any(e.get("text") == out["target"]["text"] for e in out["elements"])

    def edit(m):
        m["inputs"]["perception"]["files"]["det"]["sha256"] = "2" * 64

    r = subprocess.run([EDGE_VLA, "predict", "--model", str(_tampered(tmp_path, edit)), "--image", str(png),
                        "--instruction", "Click Save"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 78 and "ch_PP-OCRv4_det_infer.onnx" in r.stderr


def _layer(n: int) -> ElementLayer:
    els = tuple(UIElement(i + 1, "text", (10 + 60 * i, 10, 50 + 60 * i, 30), f"item {i}") for i in range(n))
    return ElementLayer(els, 640, 480, 0.0)


def test_decode_only_ever_points_at_a_mark_and_skips_dead_ones():
    rng = np.random.default_rng(0)
    layer = _layer(6)

    def on_mark(a, e) -> bool:
        x, y = to_pixels(a.x, a.y, 640, 480)
        return e in layer.elements and e.box[0] <= x < e.box[2] and e.box[1] <= y < e.box[3]

    for _ in range(50):
        out = {"type_logits": rng.normal(size=(1, len(TYPES))), "mark_logits": rng.normal(size=(1, 64)) * 5,
               "span_start": rng.normal(size=(1, 24)), "span_end": rng.normal(size=(1, 24))}
        out["type_logits"][0, TYPES.index("click")] = 10  # a click is wanted
        a, chosen, _ = decode(out, list(layer.elements), layer, "Click item 3 then go", frozenset())
        assert a.type == "click" and on_mark(a, chosen)
        dead = frozenset({("click", (a.x // 25, a.y // 25), None, None, None, None)})
        b, other, _ = decode(out, list(layer.elements), layer, "Click item 3 then go", dead)
        assert not is_dead(b, dead) and (b.type != "click" or (other is not chosen and on_mark(b, other)))


def test_with_no_marks_a_click_is_impossible_and_wait_comes_out():
    out = {"type_logits": np.array([[10.0, 9, -5, 8, 7, 0, -1]]), "mark_logits": np.zeros((1, 64)),
           "span_start": np.zeros((1, 24)), "span_end": np.zeros((1, 24))}
    a, chosen, logp = decode(out, [], _layer(0), "Click Save", frozenset())
    assert a.type == "wait" and chosen is None and logp <= 0


@pytest.mark.parametrize("image", [
    np.full((4320, 7680, 3), 200, np.uint8),  # 8K, blank
    np.random.default_rng(2).integers(0, 256, (720, 1280, 3), dtype=np.uint8),  # noise
    np.zeros((8, 8, 3), np.uint8),  # the smallest frame the pipeline lets through
])
def test_blank_noise_tiny_and_8k_frames_give_an_action_not_an_error(baseline, image):
    action, stages = baseline.infer(image, "Click Save", stream="odd")
    assert action.type in ("wait", "click") and stages["perceive"] >= 0


def test_a_crowded_page_keeps_the_elements_the_instruction_names():
    from edge_vla.runtime.marks import MAX_MARKS, featurize

    n = MAX_MARKS + 40
    els = tuple(UIElement(i + 1, "text", (10, 5 + i * 4, 90, 8 + i * 4), f"row {i}") for i in range(n))
    layer = ElementLayer(els, 640, n * 4 + 20, 0.0)
    image = np.zeros((layer.height, 640, 3), np.uint8)
    inputs, kept = featurize(layer, image, f"Click row {n - 1}")
    assert len(kept) == MAX_MARKS and inputs["feats"].shape[1] == MAX_MARKS
    assert els[-1] in kept  # the last element, named by the instruction, is not cut
    assert [e.id for e in kept] == sorted(e.id for e in kept)  # the layer's order is kept


def test_a_link_inside_a_sentence_is_clicked_where_its_words_are():
    line = UIElement(1, "text", (100, 200, 500, 220), "New on our platform? Create an account")
    layer = ElementLayer((line,), 640, 480, 0.0)
    x, _ = to_pixels(*point_of(line, layer, "Tap Create an account"), 640, 480)
    assert 380 < x < 500  # the words' part of the line, not its centre (300)
    assert abs(to_pixels(*point_of(line, layer), 640, 480)[0] - 300) <= 2


def _student(tmp_path, defer_below: float):
    dst = tmp_path / f"student-{defer_below}"
    shutil.copytree(ROOT / "models" / "edge-marks-m3", dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["inputs"]["defer_below"] = defer_below
    (dst / "manifest.json").write_text(json.dumps(m))
    return load_runtime(ModelConfig(path=dst))


def test_an_unsure_student_defers_to_reading_unless_it_clicks_what_is_named(tmp_path, baseline):
    # defer_below 1.0: the student is never sure enough; 0: reading never overrules. Same screens.
    always, never = _student(tmp_path, 1.0), _student(tmp_path, 0.0)
    for seed in (1, 3, 5):
        world = SimWorld(seed=seed, width=1280, height=720, task="click_button")
        image = np.ascontiguousarray(world.render())
        for rt in (always, never, baseline):
            rt.reset()
        always.infer(image, world.instruction)
        never.infer(image, world.instruction)
    assert never.deferred == 0 and never.decisions == 3 and always.decisions == 3
    # a screen where the instruction names nothing the student would click: "wait" is its pick
    world = SimWorld(seed=1, width=1280, height=720, task="click_button")
    image = np.ascontiguousarray(world.render())
    st = always.state("probe")
    always.infer(image, world.instruction, stream="probe")
    named = st.scored[4]
    assert named, "reading names the target's text on a click_button screen"
    out = {k: v.copy() for k, v in st.scored[2].items()}
    out["type_logits"][:] = -20
    out["type_logits"][0, TYPES.index("wait")] = 0.0  # an unsure-free wait is still not a named click
    st.scored = (*st.scored[:2], out, *st.scored[3:])
    before = always.deferred
    a, _ = always.infer(image, world.instruction, stream="probe")
    b, _ = baseline.infer(image, world.instruction)
    assert always.deferred == before + 1 and a.type == "click" and (a.x, a.y) == (b.x, b.y)
