"""Reduced precision in the ONNX graph: calibration, INT8 Q/DQ, FP16, accuracy budget.

Precision lives in the graph (Q/DQ nodes, Cast nodes), the one format that TensorRT 8-11
and ONNX Runtime all run. Everything here runs on the CPU with ONNX Runtime.
"""
