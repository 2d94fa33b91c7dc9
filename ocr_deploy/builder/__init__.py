"""Build stage: a precision ONNX becomes a deployable artifact (TensorRT engine or
ONNX Runtime-optimised model) with a sidecar JSON describing it."""
