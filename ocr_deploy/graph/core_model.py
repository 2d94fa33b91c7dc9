"""A standalone ONNX graph of just the attention core, in each form, for measurements.

Inputs ``query [batch, queries, depth]``, ``key`` and ``value [batch, keys, depth]``;
output ``context [batch, queries, depth]``. Forms:

- ``exported``: what tf2onnx emits (K^T by a Transpose of the small key, the scale as a
  Mul after the first MatMul);
- ``decomposed``: MatMul -> Softmax -> MatMul with the scale folded away, as in a model
  whose query weights absorbed it: feed it ``scale * query``;
- ``decomposed_mul_q``: the same with the scale as a Mul on the query (the rewrite's
  fallback when folding would not be exact; here the query is a graph input);
- ``attention``: the opset-23 ``Attention`` op.

The last two come from running ``apply_attention_form`` on the ``exported`` graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ocr_deploy.errors import BadInputError

CORE_FORMS = ("exported", "decomposed", "decomposed_mul_q", "attention")
EXPORT_OPSET = 17


def build_core_model(form: str, keys: int = 19, depth: int = 256, queries: int | None = None,
                     scale: float | None = None, dtype=np.float32,
                     target: str = "onnxruntime") -> onnx.ModelProto:
    """The core in ``form`` (see the module docstring); ``queries=None`` leaves N dynamic.

    ``dtype`` (float32 or float16) is the type of every tensor, the scale constant included;
    ``target``: the backend whose rewrite it is (``attention`` is 4-D for TensorRT).
    """
    from ocr_deploy.graph.attention import apply_attention_form

    if form not in CORE_FORMS:
        raise BadInputError(None, f"a form among {CORE_FORMS}", repr(form),
                            "pick one of them")
    scale = depth ** -0.5 if scale is None else scale
    exported = _exported(keys, depth, queries, scale, np.dtype(dtype),
                         with_scale=form != "decomposed")
    if form in ("exported", "decomposed"):
        return exported
    rewritten, _ = apply_attention_form(
        exported, "decomposed" if form == "decomposed_mul_q" else "attention", target)
    return rewritten


def _exported(keys: int, depth: int, queries: int | None, scale: float, dtype: np.dtype,
              with_scale: bool) -> onnx.ModelProto:
    n = queries if queries is not None else "queries"
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    inputs = [helper.make_tensor_value_info("query", elem, ["batch", n, depth]),
              helper.make_tensor_value_info("key", elem, ["batch", keys, depth]),
              helper.make_tensor_value_info("value", elem, ["batch", keys, depth])]
    output = helper.make_tensor_value_info("context", elem, ["batch", n, depth])
    scores = "scores_scaled" if with_scale else "scores"
    nodes = [helper.make_node("Transpose", ["key"], ["key_t"], perm=[0, 2, 1], name="key_t"),
             helper.make_node("MatMul", ["query", "key_t"], ["scores"], name="qk")]
    if with_scale:
        nodes.append(helper.make_node("Mul", ["scores", "scale"], [scores], name="scale"))
    nodes += [helper.make_node("Softmax", [scores], ["weights"], axis=-1, name="softmax"),
              helper.make_node("MatMul", ["weights", "value"], ["context"], name="pv")]
    constants = [numpy_helper.from_array(np.asarray(scale, dtype), "scale")] \
        if with_scale else []
    graph = helper.make_graph(nodes, "attention_core", inputs, [output], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model
