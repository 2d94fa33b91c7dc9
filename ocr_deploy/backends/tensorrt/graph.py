"""What TensorRT's ONNX parser takes, and the forms the graph passes pick for it (reasoned
from NVIDIA's documentation and user reports; not measured on a GPU here). The type facts
(no float64, no 16-bit integers, uint8 only at the network's edges and cast only to and from
float, NonZero on float, a 4-D Attention op) are NVIDIA's published parser rules, each with
its source in ``parser_rules``; ``preflight`` checks every graph against them."""

from __future__ import annotations

from ocr_deploy.graph_target import GraphTarget

GRAPH_TARGET = GraphTarget(
    name="tensorrt", float64=False, uint16=False, uint8_layout=False, resize_layout="NCHW",
    uint8_compute=False, nonzero_bool=False, attention_4d=True,
    forms={
        "attention": (
            "decomposed",
            "TensorRT's attention fusion matches MatMul-Softmax-MatMul with the scale on Q "
            "(NVIDIA's Fused Attention guide), which every TensorRT 10/11 parses; the "
            "Attention op needs TensorRT >= 10.14 (JetPack 6 stays on older 10.x) and opset "
            "23; fusion not yet confirmed on a GPU (benchmarks/attention_gpu.py)"),
        "labels": (
            "dense",
            "a GPU resizes every score in well under a millisecond; the boundary form needs "
            "data-dependent shapes (NonZero, TensorRT >= 8.5) and a scatter; not measured on "
            "a GPU"),
        "argmax": (
            "compare",
            "TensorRT turns ArgMax into a TopK layer, reported slow on segmentation maps "
            "(onnx/onnx-tensorrt #669, #671, #792); Greater/Where/Max chains fuse into "
            "pointwise kernels; not measured on a GPU"),
    })
