"""What ONNX Runtime's graph takes, and the forms the graph passes pick for it (the ONNX
Runtime figures come from benchmarks/attention_forms.py and benchmarks/end_to_end.py)."""

from __future__ import annotations

from ocr_deploy.graph_target import GraphTarget

GRAPH_TARGET = GraphTarget(
    name="onnxruntime", float64=True, uint16=True, uint8_layout=True, resize_layout=None,
    forms={
        "attention": (
            "decomposed",
            "ONNX Runtime CPU: on one thread every form takes the same time (about 15 ms for "
            "the 128x256 core); with free cores MatMul-Softmax-MatMul splits its rows across "
            "threads (33 ms vs 53 ms for the Attention op at 256x512, 2 cores) because the "
            "CPU Attention kernel parallelises over batch x heads, 1 x 1 here; no opset "
            "change"),
        "labels": (
            "boundary",
            "ONNX Runtime CPU, 1024x2048 frames, 2 threads: the whole end-to-end INT8 "
            "artifact took 43-74 ms against 98-164 ms with the dense Resize + ArgMax for the "
            "demo, 841-881 against 951-1065 ms for the Cityscapes configuration "
            "(benchmarks/end_to_end.py, interleaved)"),
        "argmax": ("argmax", "ONNX Runtime's ArgMax kernel is one pass; the comparison "
                             "chain is K-1 passes"),
    })
