"""Fold the input's normalisation into the model's first convolution, where that is exact.

``(pixel - mean) / std`` per channel, then a convolution ``W``, equals a convolution with
``W / std`` (per input channel) and bias ``b - sum(W / std * mean)``. The scale also holds
at the border: zero padding pads zeros either way. The mean does not: the first
convolution pads the *normalised* image with zeros (pixel value ``mean``), the folded one
would pad raw zeros (black), so the mean is folded only into a convolution without padding.
Folding needs the input to reach exactly one ``Conv`` (group 1, FP32 constant weights)
through layout ops alone (``Transpose``, ``Identity``); a quantised (Q/DQ) or FP16 (Cast)
model keeps its first convolution as it is and gets explicit ``Sub``/``Mul``. (The colour
order needs no folding: the resize's channel ``Gather`` puts the channels in order.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ocr_deploy.graph.index import GraphIndex, add_constant

LAYOUT_OPS = ("Transpose", "Identity")


@dataclass
class InputFold:
    """What was folded into the first convolution and what the graph still does."""

    conv: str | None = None
    folded: list[str] = field(default_factory=list)  # of "scale", "mean"
    explicit: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # step -> why it stayed explicit

    def to_dict(self) -> dict:
        return {"conv": self.conv, "folded": self.folded, "explicit": self.explicit,
                "not_folded_because": self.reasons}


def fold_input(model, tensor: str, channel_axis: int, mean: np.ndarray | None,
               scale: np.ndarray | None) -> InputFold:
    """Fold ``- mean`` and ``* scale`` (None: not needed) into the first convolution reading
    ``tensor`` (channels on ``channel_axis``). Edits ``model`` in place; returns what was
    folded and what is left to do."""
    steps = [name for name, needed in (("mean", mean is not None),
                                       ("scale", scale is not None)) if needed]
    result = InputFold()
    if not steps:
        return result
    index = GraphIndex(model)
    conv, why = _first_conv(index, tensor, channel_axis)
    if conv is None:
        result.explicit, result.reasons = steps, {step: why for step in steps}
        return result
    result.conv = index.label(conv)
    weight = numpy_helper.to_array(index.initializers[conv.input[1]]).astype(np.float32)
    bias = index.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if bias is None and len(conv.input) > 2 and conv.input[2]:
        result.explicit, result.reasons = steps, {s: "its bias is computed" for s in steps}
        return result
    if scale is not None:
        weight = weight * scale.astype(np.float32)[None, :, None, None]
        result.folded.append("scale")
    if mean is not None:
        padding = _padding(conv)
        if padding:
            result.explicit.append("mean")
            result.reasons["mean"] = (f"Conv '{result.conv}' pads its input ({padding}): the "
                                      "border would stand for another pixel value")
        else:
            shift = (weight.astype(np.float64) * mean.astype(np.float64)[None, :, None, None]
                     ).sum(axis=(1, 2, 3))
            start = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
            bias = (start - shift).astype(np.float32)
            result.folded.append("mean")
    weight_name = add_constant(model, f"{conv.input[1]}_input_folded",
                               np.ascontiguousarray(weight))
    if "mean" in result.folded:
        bias_name = add_constant(model, f"{conv.input[1]}_bias_folded", bias)
        conv.input[:] = [conv.input[0], weight_name, bias_name]
    else:
        conv.input[1] = weight_name
    return result


def _first_conv(index: GraphIndex, tensor: str, axis: int):
    """The Conv that alone reads ``tensor`` through layout ops, or (None, why not)."""
    name = tensor
    while True:
        node = index.only_consumer(name)
        if node is None:
            return None, f"'{name}' is read by {len(index.consumers.get(name, []))} nodes"
        if node.op_type in LAYOUT_OPS:
            if node.op_type == "Transpose":
                perm = next(list(a.ints) for a in node.attribute if a.name == "perm")
                axis = perm.index(axis)
            name = node.output[0]
            continue
        label = f"{node.op_type} '{index.label(node)}'"
        if node.op_type != "Conv" or node.input[0] != name:
            return None, f"the input reaches {label} first (not a Conv: quantised or cast)"
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = index.initializers.get(node.input[1])
        if axis != 1 or attributes.get("group", 1) != 1:
            return None, f"{label} is grouped or reads the channels on another axis"
        if weight is None or weight.data_type != TensorProto.FLOAT:
            return None, f"{label} has no FP32 constant weights"
        return node, ""


def _padding(conv) -> str:
    attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        return f"auto_pad {auto_pad}"
    pads = list(attributes.get("pads", []))
    return f"pads {pads}" if auto_pad == "NOTSET" and any(pads) else ""
