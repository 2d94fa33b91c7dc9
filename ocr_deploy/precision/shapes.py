"""Static tensor shapes (at batch 1) and element types of an exported model, from ONNX
shape inference."""

from __future__ import annotations

import onnx


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
