import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from edge_vla.actions import validate_action
from edge_vla.config import ModelConfig
from edge_vla.runtime.bundle import Bundle, BundleError
from edge_vla.runtime.families import load_runtime

from ..conftest import EDGE_VLA


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "b")


def test_loads_and_verifies(tiny_bundle):
    b = Bundle.load(tiny_bundle)
    assert b.manifest.family == "heads" and "policy.onnx" in b.manifest.files


def test_changed_byte_is_refused(bundle_copy):
    f = bundle_copy / "policy.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="policy.onnx sha256 .* does not match"):
        Bundle.load(bundle_copy)


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "policy.onnx").unlink()
    with pytest.raises(BundleError, match="policy.onnx is missing"):
        Bundle.load(bundle_copy)


def test_truncated_file_is_refused(bundle_copy):
    f = bundle_copy / "policy.onnx"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(BundleError, match="is 100 bytes"):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize("edit, expect", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "family"}), "family: Field required"),
    (lambda m: json.dumps({**m, "family": "martian"}), "unknown family 'martian'"),
    (lambda m: json.dumps({**m, "files": {"../escape.onnx": m["files"]["policy.onnx"]}}), "outside the bundle"),
])
def test_wrong_manifest_is_refused(bundle_copy, edit, expect):
    mpath = bundle_copy / "manifest.json"
    mpath.write_text(edit(json.loads(mpath.read_text())))
    with pytest.raises(BundleError, match=expect):
        load_runtime(ModelConfig(path=bundle_copy))


def test_not_a_folder(tmp_path):
    with pytest.raises(BundleError, match="not a folder"):
        Bundle.load(tmp_path / "nothing")
    with pytest.raises(BundleError, match="no manifest.json"):
        Bundle.load(tmp_path)


def test_random_weights_only_ever_give_valid_actions(tiny_bundle):
    rt = load_runtime(ModelConfig(path=tiny_bundle, intra_threads=1))
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(300):
        h, w = int(rng.integers(8, 300)), int(rng.integers(8, 300))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        action, stages = rt.infer(image, f"click button {i}")
        validate_action(action.fields())
        seen.add(action.type)
        assert set(stages) == {"preprocess", "model", "decode"}
    assert seen <= {"click", "scroll", "wait", "done"}


def test_predict_cli(tiny_bundle, tmp_path, clean_env):
    img = tmp_path / "screen.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 320, 3), dtype=np.uint8)).save(img)
    r = subprocess.run([EDGE_VLA, "predict", "--image", str(img), "--instruction", "click OK",
                        "--model", str(tiny_bundle)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    validate_action({k: v for k, v in out.items() if k not in ("v", "model", "latency_ms")})
    assert out["model"] == "edge-vla-heads-random" and out["latency_ms"]["total"] > 0


def test_predict_cli_bad_inputs(tiny_bundle, tmp_path, clean_env):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = subprocess.run([EDGE_VLA, "predict", "--image", str(bad), "--instruction", "x", "--model", str(tiny_bundle)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot read image" in r.stderr
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64)).save(good)
    r = subprocess.run([EDGE_VLA, "predict", "--image", str(good), "--instruction", "x", "--model", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "no manifest.json" in r.stderr


def test_shipped_bundle_verifies_and_loads_on_older_onnxruntime():
    import onnx

    from edge_vla.config import SHIPPED_MODEL

    b = Bundle.load(SHIPPED_MODEL)
    for name in b.manifest.files:
        if name.endswith(".onnx"):
            # onnxruntime 1.23 (the last with Python 3.10 wheels) reads IR <= 11
            assert onnx.load(str(b.path / name), load_external_data=False).ir_version <= 10
