"""Model export: families, ONNX graphs, quantization, TensorRT engines (torch and transformers only here).

Nothing in ``edge_vla.runtime`` imports this package; the daemon starts without torch.
"""
