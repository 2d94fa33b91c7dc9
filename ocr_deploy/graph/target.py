"""What a backend's graph compiler takes and prefers, for the graph passes that pick a form
per backend (the attention core, the end-to-end graph). The graph package owns the type and
the targets of the backends it knows (``TARGETS``, with the reasons for their choices); each
backend package hands its own to the passes (``Backend.graph_target``). The passes read the
target's facts and never test which backend it is; they never ask the backend registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_deploy.errors import BadInputError


@dataclass(frozen=True)
class GraphTarget:
    """A backend as graph passes see it.

    ``forms``: step -> (form, why) for each step a pass chooses by itself ("attention",
    "labels", "argmax"). ``float64``: it computes float64 tensors (size tables of dynamic
    images); ``uint16``: it has 16-bit integer tensors (labels beyond 256 classes, else
    int32); ``uint8_layout``: uint8 transposes and gathers are fast there (else the image
    goes to int32 first); ``resize_layout``: the layout its Resize wants (None: any).
    ``uint8_compute``: it computes on uint8 tensors and casts them to and from integer types
    (else uint8 appears only at the graph's input and output, converted through float32);
    ``nonzero_bool``: its NonZero takes a bool mask (else a float one); ``attention_4d``:
    its Attention op wants 4-D Q, K, V (else 3-D with one head is kept).
    """

    name: str
    forms: dict = field(default_factory=dict)
    float64: bool = True
    uint16: bool = True
    uint8_layout: bool = True
    resize_layout: str | None = None
    uint8_compute: bool = True
    nonzero_bool: bool = True
    attention_4d: bool = False


# ONNX Runtime: the figures come from benchmarks/attention_forms.py and benchmarks/end_to_end.py
ONNXRUNTIME = GraphTarget(
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

# TensorRT's ONNX parser: reasoned from NVIDIA's documentation and user reports, not measured
# on a GPU here. The type facts (no float64, no 16-bit integers, uint8 only at the network's
# edges and cast only to and from float, NonZero on float, a 4-D Attention op) are NVIDIA's
# published parser rules, each with its source in ``backends.tensorrt.parser_rules``;
# ``backends.tensorrt.preflight`` checks every graph against them.
TENSORRT = GraphTarget(
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

TARGETS = {target.name: target for target in (TENSORRT, ONNXRUNTIME)}  # the registry's order


def graph_target(target: GraphTarget | str) -> GraphTarget:
    """``target``, or the known target (``TARGETS``) of the backend it names."""
    if isinstance(target, GraphTarget):
        return target
    if target not in TARGETS:
        raise unknown_backend(target, tuple(TARGETS))
    return TARGETS[target]


def unknown_backend(name: str, choices: tuple[str, ...]) -> BadInputError:
    """The error for a backend name that is not registered."""
    return BadInputError(None, f"a backend among {', '.join(choices)}", repr(name),
                         "pass one of them")
