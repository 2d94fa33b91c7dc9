"""Static tensor shapes (at batch 1) and element types of an exported model, from ONNX
shape inference, and what one forward pass holds (``forward_bytes``)."""

from __future__ import annotations

import math

import onnx

# ONNX Runtime's CPU peak over the live activations ``forward_bytes`` counts (its
# allocator's rounding, kernels' scratch): 1.5x at 512x1024 for the Cityscapes OCRNet.
RUNNER_OVERHEAD = 1.5


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """``name -> dims`` for every tensor whose shape is fully known at batch 1."""
    sized = onnx.ModelProto()
    sized.CopyFrom(model)
    del sized.graph.value_info[:]
    for graph_input in sized.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(sized)
    except Exception:
        return {}
    shapes = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[info.name] = dims
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """``name -> ONNX element type`` of every tensor the graph declares or shape inference
    types (initializers excluded)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    infos = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {i.name: i.type.tensor_type.elem_type for i in infos
            if i.type.tensor_type.elem_type}


def float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of float32 tensors, from the graph's declarations and shape inference."""
    return {name for name, kind in tensor_types(model).items() if kind == onnx.TensorProto.FLOAT}


def forward_bytes(model) -> int:
    """Bytes one image's forward pass holds at its peak: the largest sum of activations
    alive at once when the nodes run in graph order (each freed after its last reader),
    from ``static_shapes`` at batch 1, times ``RUNNER_OVERHEAD``; tensors of unknown shape
    count nothing. ``model``: an ``onnx.ModelProto`` (``memory_budget.MemoryBudget`` turns
    it into a batch size)."""
    shapes, types = static_shapes(model), tensor_types(model)
    weights = {t.name for t in model.graph.initializer}

    def size(name: str) -> int:
        if name not in shapes or name in weights:
            return 0
        return math.prod(shapes[name]) * _itemsize(types.get(name))

    last_read = {}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            last_read[name] = index
    for output in model.graph.output:
        last_read[output.name] = len(model.graph.node)
    live = {i.name: size(i.name) for i in model.graph.input if i.name not in weights}
    held = peak = sum(live.values())
    for index, node in enumerate(model.graph.node):
        for name in node.output:
            if name and name not in live:
                live[name] = size(name)
                held += live[name]
        peak = max(peak, held)
        for name in list(live):
            if last_read.get(name, -1) <= index:
                held -= live.pop(name)
    return int(peak * RUNNER_OVERHEAD)


def _itemsize(onnx_type: int | None) -> int:
    """Bytes of an ONNX element type (float32's when unknown)."""
    if not onnx_type:
        return 4
    return onnx.helper.tensor_dtype_to_np_dtype(onnx_type).itemsize
