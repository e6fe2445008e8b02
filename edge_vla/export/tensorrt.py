"""TensorRT engines from a bundle's ONNX graphs (``edge-vla export --engine tensorrt``).

Uses the TensorRT Python API when ``tensorrt`` is importable (it is not
installable from PyPI on these machines; JetPack ships it). Handles both
TensorRT 10 (JetPack 6: precision builder flags, fp16 via ``BuilderFlag.FP16``)
and TensorRT 11 (strongly typed networks only: precision comes from the ONNX
types, so an fp16 engine needs ``--precision fp16`` graphs). Optimisation
profiles come from the manifest's shape limits
(``edge_vla.runtime.tensorrt.profiles``). Each engine is also wrapped in an
onnxruntime EPContext model so the TensorRT execution provider loads it without
rebuilding. The manifest records the TensorRT version and the GPU; the runtime
refuses the engine on any other (``check_engine``).
"""

from __future__ import annotations

from pathlib import Path

from ..runtime.tensorrt import gpu_name, profiles


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise TensorRTUnavailable(
            "--engine tensorrt needs the TensorRT Python package (`import tensorrt` failed). It is not on PyPI "
            "for this platform: on Jetson it comes with JetPack (python3-libnvinfer), on x86 with the TensorRT "
            "tarball or NVIDIA's index. Build the engine on the device that will run it.") from None
    return trt


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def build_engine(trt, onnx_path: Path, plan_path: Path, shapes: dict[str, dict[str, list[int]]], precision: str,
                 workspace_mb: int = 2048) -> dict:
    """Build one serialized engine; returns what was done (for the manifest)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = _major(trt)
    flags = 0
    strongly_typed = major >= 11
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strongly_typed:
        if precision in ("fp16", "int4", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise RuntimeError(f"{onnx_path.name}: input {name!r} has no shape limits in the manifest")
        s = shapes[name]
        profile.set_shape(name, s["min"], s["opt"], s["max"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path.name}")
    plan_path.write_bytes(bytes(serialized))
    return {"plan": plan_path.name, "strongly_typed": strongly_typed,
            "flags": [] if strongly_typed else (["FP16"] if precision in ("fp16", "int4", "int8") else [])
            + (["INT8"] if precision == "int8" else [])}


def ep_context_model(onnx_path: Path, plan_name: str, out_path: Path) -> None:
    """An onnxruntime EPContext model that points the TensorRT EP at a prebuilt engine."""
    import onnx
    from onnx import helper

    src = onnx.load(str(onnx_path), load_external_data=False)
    inputs = [i.name for i in src.graph.input]
    outputs = [o.name for o in src.graph.output]
    node = helper.make_node("EPContext", inputs, outputs, name=f"{onnx_path.stem}_trt", domain="com.microsoft",
                            embed_mode=0, ep_cache_context=plan_name, source="TensorrtExecutionProvider",
                            main_context=1)
    graph = helper.make_graph([node], f"{onnx_path.stem}_ep_context", list(src.graph.input), list(src.graph.output))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(out_path))


def build_engines(folder: Path, manifest, trt=None, gpu: str | None = None) -> dict:
    """Build engines for vision.onnx and decoder.onnx in ``folder/engines``; returns the manifest entry."""
    trt = trt or import_tensorrt()
    gpu = gpu or gpu_name()
    if gpu is None:
        raise TensorRTUnavailable("--engine tensorrt: no NVIDIA GPU found (nvidia-smi / Jetson device tree)")
    shapes = profiles(manifest.inputs)
    engines = folder / "engines"
    engines.mkdir(exist_ok=True)
    built = {}
    for graph in ("vision.onnx", "decoder.onnx"):
        plan = engines / (Path(graph).stem + ".plan")
        built[graph] = build_engine(trt, folder / graph, plan, shapes[graph], manifest.precision)
        ep_context_model(folder / graph, plan.name, engines / (Path(graph).stem + "_ctx.onnx"))
    return {"kind": "tensorrt", "tensorrt_version": str(trt.__version__), "gpu": gpu, "graphs": built,
            "profiles": shapes}
