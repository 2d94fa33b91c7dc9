"""Build backends: one module per backend (ONNX Runtime, TensorRT)."""
