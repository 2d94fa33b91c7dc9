"""Find OCRNet's object-attention core(s) in an exported ONNX graph.

The core is ``MatMul(Q, K^T) -> [Mul|Div by a scalar constant] -> Softmax(last axis) ->
MatMul(P, V)``, whatever Keras wrote it with (the project's ``ObjectAttention`` layer, the
blog's ``TFOpLambda`` ops; key/value through Dense or 1x1 convolutions): tf2onnx emits the
same four nodes in every case, with K^T as a ``Squeeze`` or ``Transpose`` of the small key
tensor. The scale may be written either way round (``s * scores`` or ``scores * s``), as a
Div (``scores / sqrt(D)``), or already applied to Q before the first MatMul (then there is
no scale node). Rank-3 cores ``[B,N,D]`` and per-head rank-4 cores ``[B,heads,N,d]`` (the
usual multi-head split) both match. A Softmax whose input is not computed by a MatMul, such
as the spatial gather's softmax over pixels (fed by a Reshape of the auxiliary logits), is
not a candidate.

A candidate that starts like a core but breaks the pattern (a mask added to the scores, a
softmax over another axis, scores read elsewhere) is reported as a problem, not matched:
``--attention auto`` leaves it as exported and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ocr_deploy.graph.index import GraphIndex

SCALE_OPS = ("Mul", "Div")
SCORE_OPS = (*SCALE_OPS, "Add", "Sub")  # an elementwise op between MatMul and Softmax


@dataclass
class AttentionCore:
    """One attention core: its node names, tensor names, shapes and scale."""

    first_matmul: str  # Q @ K^T
    softmax: str
    second_matmul: str  # P @ V
    query: str  # [B, N, D]: N queries (pixels); [B, heads, N, d] per head
    key_t: str  # [B, D, K]: K keys (object regions); [B, heads, d, K]
    value: str  # [B, K, Dv]; [B, heads, K, dv]
    output: str  # [B, N, Dv]; [B, heads, N, dv]
    scale_node: str | None = None  # the Mul/Div after the first MatMul, if any
    scale_constant: str | None = None  # its constant input
    scale: float | None = None  # the factor the scores are multiplied by
    shapes: dict = field(default_factory=dict)  # tensor role -> dims

    def to_dict(self) -> dict:
        """A JSON-ready description (node names, shapes, scale)."""
        return {"nodes": {"first_matmul": self.first_matmul, "scale": self.scale_node,
                          "softmax": self.softmax, "second_matmul": self.second_matmul},
                "tensors": {"query": self.query, "key_t": self.key_t, "value": self.value,
                            "output": self.output},
                "shapes": self.shapes, "scale": self.scale}


@dataclass
class Findings:
    """The cores matched, and candidates that looked like cores but were not."""

    cores: list[AttentionCore] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # softmaxes that are no attention core of this form (spatial gather, a final softmax,
    # einsum-written attention), and why: left as exported by every form
    others: list[str] = field(default_factory=list)


def find_attention_cores(model) -> Findings:
    """Match every attention core of ``model`` (an ``onnx.ModelProto``)."""
    index = GraphIndex(model)
    findings = Findings()
    for node in index.graph.node:
        if node.op_type != "Softmax":
            continue
        match = _match(index, node)
        if isinstance(match, AttentionCore):
            findings.cores.append(match)
        elif match is not None:
            findings.problems.append(f"Softmax '{index.label(node)}': {match}")
        else:
            findings.others.append(f"Softmax '{index.label(node)}': {_not_a_core(index, node)}")
    return findings


def _not_a_core(index: GraphIndex, softmax) -> str:
    """Why a softmax is not a candidate: what computes its input."""
    producer = index.producer.get(softmax.input[0])
    if producer is None:
        return "its input is a graph input"
    if producer.op_type == "Einsum":
        return "its scores come from an Einsum (einsum-written attention is left as exported)"
    return f"its input comes from {producer.op_type}, not from a MatMul of Q and K^T"


def _match(index: GraphIndex, softmax) -> AttentionCore | str | None:
    """A core, a problem description (a near miss), or None (not a candidate)."""
    scores = index.producer.get(softmax.input[0])
    if scores is None:
        return None
    scale_node = None
    if scores.op_type in SCORE_OPS:
        from_matmul = [i for i in scores.input
                       if getattr(index.producer.get(i), "op_type", None) == "MatMul"]
        if len(from_matmul) != 1:
            return None
        scale_node, first = scores, index.producer[from_matmul[0]]
    elif scores.op_type == "MatMul":
        first = scores
    else:
        return None

    scale = constant_name = None
    if scale_node is not None:
        found = _scale(index, scale_node, first.output[0])
        if isinstance(found, str):
            return found
        scale, constant_name = found
    problem = _check_chain(index, first, scale_node, softmax)
    if problem:
        return problem
    second = index.only_consumer(softmax.output[0])
    if second is None or second.op_type != "MatMul" or second.input[0] != softmax.output[0]:
        readers = ", ".join(f"{n.op_type} '{index.label(n)}'"
                            for n in index.consumers.get(softmax.output[0], [])) or "nothing"
        return f"its output should feed one MatMul as P in P @ V, but feeds {readers}"
    core = AttentionCore(index.label(first), index.label(softmax), index.label(second),
                         query=first.input[0], key_t=first.input[1], value=second.input[1],
                         output=second.output[0],
                         scale_node=index.label(scale_node) if scale_node is not None else None,
                         scale_constant=constant_name, scale=scale)
    return _check_shapes(index, core)


def _scale(index: GraphIndex, node, scores: str) -> tuple[float, str] | str:
    """(factor, constant name) of a Mul/Div by one scalar constant, else a problem."""
    if node.op_type not in SCALE_OPS:
        return (f"the scores pass through {node.op_type} '{index.label(node)}' (a mask or "
                "bias?), not a scale")
    other = [i for i in node.input if i != scores]
    value = index.constant(other[0]) if len(other) == 1 else None
    if value is None or value.size == 0 or not np.all(value == value.flat[0]):
        return (f"the scores are scaled by {node.op_type} '{index.label(node)}' with a "
                "non-constant or non-uniform factor")
    if node.op_type == "Div" and node.input[0] != scores:
        return f"Div '{index.label(node)}' divides by the scores"
    factor = float(value.flat[0])
    if factor <= 0:
        return f"{node.op_type} '{index.label(node)}' scales by {factor:g} (not positive)"
    return (1.0 / factor if node.op_type == "Div" else factor), other[0]


def _check_chain(index: GraphIndex, first, scale_node, softmax) -> str | None:
    """The scores must be private to the chain, and the softmax over the last axis."""
    chain = [first] if scale_node is None else [first, scale_node]
    for node in chain:
        if index.only_consumer(node.output[0]) is None:
            return f"the scores ({node.output[0]}) are also read outside the softmax"
    rank = index.rank(softmax.input[0])
    if rank is None:
        return "the rank of its input is unknown (run shape inference on the model)"
    default_axis = -1 if index.opset >= 13 else 1
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), default_axis)
    if axis % rank != rank - 1:
        return f"it normalises over axis {axis} of a rank-{rank} tensor, not over the keys"
    return None


def _check_shapes(index: GraphIndex, core: AttentionCore) -> AttentionCore | str:
    roles = {"query": core.query, "key_t": core.key_t, "value": core.value,
             "output": core.output}
    core.shapes = {role: index.shape(name) for role, name in roles.items()}
    ranks = {role: len(dims) if dims is not None else None for role, dims in core.shapes.items()}
    if len(set(ranks.values())) != 1 or ranks["query"] not in (3, 4):
        return ("expected rank-3 query [B,N,D], key^T [B,D,K], value [B,K,Dv] (or rank 4 "
                "with heads), found ranks "
                + ", ".join(f"{role} {rank}" for role, rank in ranks.items()))
    query, key_t, value = core.shapes["query"], core.shapes["key_t"], core.shapes["value"]
    for a, b, what in ((query[-1], key_t[-2], "query and key depth"),
                       (key_t[-1], value[-2], "key and value counts")):
        if isinstance(a, int) and isinstance(b, int) and a and b and a != b:
            return f"{what} differ ({a} vs {b})"
    return core
