"""Weight quantization of the bundle's graphs with onnxruntime's own quantizers.

- ``int8``: ``quantize_dynamic`` on MatMul only (int8 weights, activations
  quantized per call). Convolutions stay fp32: ConvInteger was measured to be
  twice as slow as fp32 Conv on this class of CPU.
- ``int4``: ``MatMulNBitsQuantizer`` — 4-bit block-quantized weights (blocks of
  32 along K, symmetric) in ``com.microsoft.MatMulNBits`` nodes.
- ``fp16``: ``onnxruntime.transformers.float16`` with fp32 inputs/outputs kept
  (meant for GPU/TensorRT; onnxruntime's CPU provider runs most fp16 ops slowly
  or by casting).
"""

from __future__ import annotations

from pathlib import Path

from .families import ExportError

INT4_BLOCK = 32


def _count(model, op: str) -> int:
    return sum(1 for n in model.graph.node if n.op_type == op)


def quantize_graph(src: Path, dst: Path, precision: str) -> dict:
    import onnx

    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True})
        m = onnx.load(str(dst), load_external_data=False)
        return {"MatMulInteger": _count(m, "MatMulInteger") + _count(m, "DynamicQuantizeMatMul")}
    if precision == "int4":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        model = onnx.load(str(src))
        q = MatMulNBitsQuantizer(model, block_size=INT4_BLOCK, is_symmetric=True, accuracy_level=4)
        q.process()
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
        m = onnx.load(str(dst), load_external_data=False)
        return {"MatMulNBits": _count(m, "MatMulNBits"), "block_size": INT4_BLOCK}
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        model = onnx.load(str(src))
        onnx.save(convert_float_to_float16(model, keep_io_types=True), str(dst))
        return {}
    raise ExportError(f"unknown precision {precision!r}")


def quantize_bundle_graphs(folder: Path, precision: str) -> dict:
    """Quantize vision.onnx and decoder.onnx in place; returns what was quantized per graph."""
    info = {}
    for name in ("vision.onnx", "decoder.onnx"):
        src = folder / name
        tmp = folder / f".{name}.q"
        info[name] = quantize_graph(src, tmp, precision)
        tmp.replace(src)
    if precision in ("int8", "int4") and info["decoder.onnx"].get("MatMulNBits", 1) == 0:
        raise ExportError("int4 quantization found no MatMul with constant weights in decoder.onnx")
    return info
