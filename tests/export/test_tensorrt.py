"""TensorRT around what can run here: profiles, provider options, manifest checks, the builder against a FAKE.

The `tensorrt` module cannot be installed on these machines. ``FakeTRT`` below
is a clearly labelled stand-in that records the builder calls; it checks our
use of the API shape (TensorRT 10 flags vs TensorRT 11 strongly typed), not
TensorRT itself. No engine is built or run in these tests.
"""

from __future__ import annotations

import types

import pytest

pytest.importorskip("torch")  # the export extra; without it these tests skip
pytest.importorskip("onnxscript")

from edge_vla.runtime.bundle import Bundle, BundleError, Manifest
from edge_vla.runtime.tensorrt import CPU_EP, TRT_EP, check_engine, decoder_profile_options, profiles, providers_for

from .conftest import model_cfg


def test_profiles_from_manifest_limits(exported):
    m = Bundle.load(exported("student")).manifest
    p = profiles(m.inputs)
    lim = m.inputs["limits"]
    dec = p["decoder.onnx"]
    assert dec["inputs_embeds"]["max"] == [1, lim["max_prompt"], m.inputs["hidden"]]
    assert dec["past_key_0"]["min"][2] == 0 and dec["past_key_0"]["max"][2] == lim["max_seq"] - 1
    assert len([k for k in dec if k.startswith("past_")]) == 2 * m.inputs["kv"]["layers"]
    s = m.inputs["image_size"]
    assert p["vision.onnx"]["pixels"]["opt"] == [1, 3, s, s]
    opts = decoder_profile_options(m.inputs)
    assert opts["trt_profile_max_shapes"].startswith(f"inputs_embeds:1x{lim['max_prompt']}x")


def test_provider_selection_order_and_cache_dir(exported, tmp_path):
    b = Bundle.load(exported("student"))
    cfg = model_cfg(b.path, providers=[TRT_EP, "CUDAExecutionProvider", CPU_EP], engine_cache_dir=tmp_path)
    got = providers_for(cfg, b, available=[TRT_EP, "CUDAExecutionProvider", CPU_EP])
    assert [n for n, _ in got] == [TRT_EP, "CUDAExecutionProvider", CPU_EP]
    assert got[0][1]["trt_engine_cache_path"] == str(tmp_path)
    got = providers_for(cfg, b, available=[CPU_EP])  # this machine: CPU only
    assert [n for n, _ in got] == [CPU_EP]


def _with_engine(bundle: Bundle, version="10.3.0", gpu="Orin (nvgpu)") -> Bundle:
    prov = {**bundle.manifest.provenance, "engine": {"kind": "tensorrt", "tensorrt_version": version, "gpu": gpu}}
    return Bundle(bundle.path, Manifest.model_validate({**bundle.manifest.model_dump(), "provenance": prov}))


def test_runtime_refuses_engine_for_other_version_or_gpu(exported):
    b = _with_engine(Bundle.load(exported("student")))
    trt = [(TRT_EP, {}), (CPU_EP, {})]
    check_engine(b, trt, trt_version="10.3.0", gpu="Orin (nvgpu)")  # same: fine
    with pytest.raises(BundleError, match="built with TensorRT 10.3.0, this machine has 10.7.0"):
        check_engine(b, trt, trt_version="10.7.0", gpu="Orin (nvgpu)")
    with pytest.raises(BundleError, match="built for GPU 'Orin \\(nvgpu\\)'"):
        check_engine(b, trt, trt_version="10.3.0", gpu="NVIDIA H200")
    with pytest.raises(BundleError, match="not importable"):
        check_engine(b, trt, probe=False)
    check_engine(b, [(CPU_EP, {})])  # no TensorRT EP: the engine is not used, nothing to check


class FakeTRT:
    """FAKE `tensorrt` module (API shape only): records what the builder asks for."""

    def __init__(self, version: str):
        self.__version__ = version
        self.calls: list = []
        fake = self
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, lvl: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

        class Net:
            def __init__(self, flags):
                fake.calls.append(("network_flags", flags))
                self.inputs = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return types.SimpleNamespace(name=self.inputs[i])

        class Parser:
            def __init__(self, net, logger):
                self.net = net

            def parse_from_file(self, path):
                import onnx
                self.net.inputs = [i.name for i in onnx.load(path, load_external_data=False).graph.input]
                return True

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                fake.calls.append(("shape", name, mn, opt, mx))

        class Config:
            def set_memory_pool_limit(self, pool, n):
                pass

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, p):
                pass

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return Net(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, net, cfg):
                return b"FAKE-ENGINE"

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.mark.parametrize("version,strong", [("10.3.0", False), ("11.0.0", True)])
def test_builder_uses_flags_or_strong_typing(exported, tmp_path, version, strong):
    import shutil

    import onnx

    from edge_vla.export.tensorrt import build_engines

    path = tmp_path / "b"
    shutil.copytree(exported("student"), path)
    m = Bundle.load(path).manifest.model_copy(update={"precision": "fp16"})
    fake = FakeTRT(version)
    entry = build_engines(path, m, trt=fake, gpu="Orin (nvgpu)")
    assert entry["tensorrt_version"] == version and entry["gpu"] == "Orin (nvgpu)"
    flags = [c for c in fake.calls if c[0] == "flag"]
    net_flags = {c[1] for c in fake.calls if c[0] == "network_flags"}
    if strong:
        assert not flags and net_flags == {1 << 1}
    else:
        assert ("flag", "FP16") in flags and net_flags == {0}
    shapes = {c[1]: c[2:] for c in fake.calls if c[0] == "shape"}
    assert shapes["past_key_0"][0][2] == 0
    assert (path / "engines" / "decoder.plan").read_bytes() == b"FAKE-ENGINE"
    ctx = onnx.load(str(path / "engines" / "decoder_ctx.onnx"))
    node = ctx.graph.node[0]
    assert node.op_type == "EPContext" and node.domain == "com.microsoft"
    assert {a.name: a for a in node.attribute}["ep_cache_context"].s == b"decoder.plan"
