"""Export tiny LLaVA (CLIP, SigLIP), Llama 4 and student models; parity through onnxruntime; bundle checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")  # the export extra; without it these tests skip
pytest.importorskip("onnxscript")

from edge_vla.actions import validate_action
from edge_vla.runtime.bundle import Bundle, BundleError
from edge_vla.runtime.families import load_runtime

from .conftest import model_cfg

KINDS = ["llava-clip", "llava-siglip", "llama4", "student"]


@pytest.mark.parametrize("kind", KINDS)
def test_export_passes_parity_and_runs(exported, kind):
    path = exported(kind)
    bundle = Bundle.load(path)
    m = bundle.manifest
    par = m.provenance["parity"]
    assert m.family == "vlm" and par["tokens_equal"] and par["max_abs_diff"] < 1e-4
    assert set(m.files) >= {"vision.onnx", "decoder.onnx", "embed.npy", "reference.npz"}
    ref = np.load(path / "reference.npz")
    assert ref["torch_logits"].shape[0] == par["steps"] + 1
    rt = load_runtime(model_cfg(path))
    rng = np.random.default_rng(0)
    action, stages = rt.infer(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), "click the ok button")
    validate_action(action.fields())
    assert set(stages) == {"vision", "prefill", "decode"}


def test_llama4_export_exercises_chunked_and_nope_layers(exported):
    m = Bundle.load(exported("llama4")).manifest
    prompt_len = len(m.inputs["prompt"]["prefix"]) + m.inputs["num_image_tokens"] + len("click the ok button")
    assert prompt_len > 16  # the tiny model's attention chunk is 16: parity covered a chunk boundary
    assert m.provenance["decoder_flavour"] == "llama4"


def test_failed_parity_writes_nothing(tmp_path):
    import onnx
    from onnx import numpy_helper

    from edge_vla.export.exporter import export_model
    from edge_vla.export.families import ExportError, tiny

    def tamper(stage):  # perturb one decoder weight: the graph no longer matches PyTorch
        m = onnx.load(str(stage / "decoder.onnx"))
        init = max(m.graph.initializer, key=lambda t: np.prod(t.dims))
        arr = numpy_helper.to_array(init).copy()
        arr.flat[0] += 5.0
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
        onnx.save(m, str(stage / "decoder.onnx"))

    out = tmp_path / "bad"
    with pytest.raises(ExportError, match="parity check failed"):
        export_model(tiny("student"), out, _tamper=tamper)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]


@pytest.mark.parametrize("damage", ["byte", "missing", "manifest"])
def test_corrupted_bundle_refused(exported, tmp_path, damage):
    path = tmp_path / "b"
    shutil.copytree(exported("student"), path)
    if damage == "byte":
        data = bytearray((path / "decoder.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / "decoder.onnx").write_bytes(bytes(data))
        match = "decoder.onnx sha256 .* does not match"
    elif damage == "missing":
        (path / "embed.npy").unlink()
        match = "embed.npy is missing"
    else:
        raw = json.loads((path / "manifest.json").read_text())
        raw["files"]["vision.onnx"]["size"] += 1
        (path / "manifest.json").write_text(json.dumps(raw))
        match = "vision.onnx is .* bytes, manifest says"
    with pytest.raises(BundleError, match=match):
        load_runtime(model_cfg(path))


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_exports(exported, precision):
    path = exported("student", precision=precision)
    m = Bundle.load(path).manifest
    q = m.provenance["parity"]["quantized"]
    assert m.precision == precision and q["min_cosine_vs_fp32"] >= q["threshold"]
    op = "MatMulNBits" if precision == "int4" else "MatMulInteger"
    assert q["decoder.onnx"][op] > 0
    import onnx
    ops = {n.op_type for n in onnx.load(str(path / "decoder.onnx")).graph.node}
    assert (op in ops) or ("DynamicQuantizeMatMul" in ops)
    rt = load_runtime(model_cfg(path))
    action, _ = rt.infer(np.zeros((64, 64, 3), np.uint8), "type hello")
    validate_action(action.fields())


def test_cli_export_and_predict(tmp_path):
    """`edge-vla export` on a checkpoint folder, then `edge-vla predict` on the bundle (subprocess)."""
    import subprocess
    import sys

    from PIL import Image

    from edge_vla.export.families import tiny

    ckpt = tmp_path / "ckpt"
    tiny("student", seed=3).save_pretrained(ckpt)
    edge = [sys.executable, "-m", "edge_vla.cli"]
    r = subprocess.run(edge + ["export", str(ckpt), "--out", str(tmp_path / "bundle"), "--parity-steps", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["tokens_equal"] is True
    img = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(img)
    r = subprocess.run(edge + ["predict", "--image", str(img), "--instruction", "open settings",
                               "--model", str(tmp_path / "bundle")], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    validate_action({k: v for k, v in out.items() if k not in ("v", "model", "latency_ms")})
    assert {"vision", "prefill", "decode", "total"} <= set(out["latency_ms"])
    # a source the exporter does not know: a clear error, exit 1
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "config.json").write_text('{"model_type": "bert"}')
    r = subprocess.run(edge + ["export", str(tmp_path / "weird"), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "model_type 'bert' is not supported" in r.stderr


def test_engine_tensorrt_without_tensorrt_fails_clearly(tmp_path):
    from edge_vla.export.exporter import export_model
    from edge_vla.export.families import tiny
    from edge_vla.export.tensorrt import TensorRTUnavailable

    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is importable here")
    except ImportError:
        pass
    with pytest.raises(TensorRTUnavailable, match="needs the TensorRT Python package"):
        export_model(tiny("student"), tmp_path / "b", engine="tensorrt")
    assert not (tmp_path / "b").exists()


def test_roi_auto_runs_both_stages_only_for_a_bundle_trained_with_focus(exported):
    plain, focus = exported("student"), exported("student", focus=True)
    assert load_runtime(model_cfg(plain)).roi is None  # auto: no FOCUS token, one view a frame
    rt = load_runtime(model_cfg(focus))
    assert rt.roi is not None  # auto: the global view proposes a focus, the crop reads
    action, stages = rt.infer(np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8), "click ok")
    validate_action(action.fields())
    assert load_runtime(model_cfg(focus, roi="off")).roi is None
