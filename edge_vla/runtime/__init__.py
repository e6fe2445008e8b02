"""Model runtime: bundles, ONNX Runtime sessions, and the per-family inference code.

Only numpy and onnxruntime are needed here; torch lives in ``edge_vla.export``.
"""
