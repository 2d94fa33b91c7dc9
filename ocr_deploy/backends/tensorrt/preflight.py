"""The TensorRT preflight: an ONNX graph judged against NVIDIA's published ONNX-parser rules
(``parser_rules``) for a TensorRT version, without TensorRT. NVIDIA's rules, not a
TensorRT run: only a real parser and builder can say more (kernels, fusions, memory).

Tensor types come from ONNX shape inference (``strict_mode`` off: a node it cannot type
leaves its outputs unknown, and rules about unknown types are not applied). Only the main
graph's nodes are judged (not the bodies of ``If``/``Loop``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ocr_deploy.backends.tensorrt.library import version_tuple
from ocr_deploy.backends.tensorrt.parser_rules import (
    DLA_LAYERS,
    DLA_NO_LAYER,
    OPS,
    QUANTIZED_TYPES,
    RULES,
    TENSORRT_TYPES,
    matrix_for,
)
from ocr_deploy.errors import BadInputError

DEFAULT_VERSION = "10.3"  # JetPack 6's TensorRT: the oldest the project targets
QDQ = ("QuantizeLinear", "DequantizeLinear")
RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                      "asymmetric", "align_corners")
DLA_MAX_SIDE, DLA_KERNEL, DLA_STRIDE = 8192, (1, 32), (1, 8)
DLA_ELEMENTWISE_RANK = ("Activation", "ElementWise")  # "2D only": 4-D NCHW tensors
WEIGHT_AXIS = {"Conv": lambda rank, node: 0, "ConvTranspose": lambda rank, node: 1,
               "MatMul": lambda rank, node: rank - 1,
               "Gemm": lambda rank, node: 0 if _attr(node, "transB", 0) else 1}


@dataclass(frozen=True)
class Finding:
    """One rule a node breaks."""

    node: str
    op: str
    rule: str
    detail: str

    @property
    def source(self) -> str:
        return RULES[self.rule].source

    def line(self) -> str:
        return f"{self.node} ({self.op}): [{self.rule}] {self.detail} (source: {self.source})"

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "rule": self.rule, "detail": self.detail,
                "source": self.source}


@dataclass
class Report:
    """What the preflight found for one graph and one TensorRT version."""

    version: str
    matrix: str
    nodes: int
    findings: list[Finding] = field(default_factory=list)
    dla_gpu_fallback: list[Finding] | None = None  # DLA asked: the layers left to the GPU

    @property
    def accepted(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        dla = {} if self.dla_gpu_fallback is None else {
            "dla_gpu_fallback": [f.to_dict() for f in self.dla_gpu_fallback]}
        return {"tensorrt_version": self.version, "operator_matrix": self.matrix,
                "nodes": self.nodes, "accepted": self.accepted,
                "findings": [f.to_dict() for f in self.findings], **dla}


class PreflightError(BadInputError):
    """The graph breaks NVIDIA's parser rules (exit 2); ``details``: one line per finding,
    printed under the error."""

    def __init__(self, report: Report, action: str):
        self.details = [finding.line() for finding in report.findings]
        super().__init__(None, f"a graph TensorRT {report.version}'s ONNX parser takes "
                         "(NVIDIA's published rules, the preflight)",
                         f"{len(report.findings)} finding(s), listed below", action)


def check_before_parse(model_bytes: bytes, version: str | None, parse_errors,
                       warn) -> Report:
    """The preflight every TensorRT graph gets before parsing. Findings are warnings when
    the installed TensorRT's parser (``parse_errors(model_bytes)`` -> its errors) takes the
    graph anyway (each given to ``warn``, e.g. ``warning_channel.warn``): it decides; else,
    or with no parser here (``parse_errors`` None), ``PreflightError``."""
    report = preflight(onnx.load_from_string(model_bytes), version)
    if report.accepted:
        return report
    if parse_errors is None:
        raise PreflightError(report, f"TensorRT {report.version}'s published parser rules "
                             "refuse it: rebuild the graph with this version of ocr-deploy, "
                             "or report it")
    errors = parse_errors(model_bytes)
    if errors:
        raise PreflightError(report, f"TensorRT's parser refused it too ({errors[0][:200]}); "
                             "rebuild the graph with this version of ocr-deploy, or report it")
    for finding in report.findings:
        warn(f"preflight: {finding.line()}")
    warn(f"TensorRT {version}'s parser took the graph despite "
         f"{len(report.findings)} preflight finding(s): the parser decides")
    return report


def target_version(text: str | None = None) -> str:
    """The TensorRT version to judge for: ``text``, else the installed TensorRT's, else
    ``DEFAULT_VERSION``; refuses what is not a TensorRT >= 10 version."""
    if text is None:
        try:
            import tensorrt
        except ImportError:
            return DEFAULT_VERSION
        text = tensorrt.__version__
    parts = version_tuple(text)
    if len(parts) < 2 or parts[0] < 10 or not str(text)[:1].isdigit():
        raise BadInputError(None, "a TensorRT version >= 10, like 10.3 (JetPack 6) or 10.15",
                            f"'{text}'", "pass --trt-version MAJOR.MINOR")
    return str(text)


def preflight(model: onnx.ModelProto, version: str | None = None, dla: bool = False
              ) -> Report:
    """Judge ``model`` for TensorRT ``version`` (see ``target_version``); ``dla``: also name
    the nodes DLA's documented restrictions leave to the GPU (``Report.dla_gpu_fallback``:
    GPU fallback, not a refusal)."""
    version = target_version(version)
    parsed = version_tuple(version)
    graph = Graph(model)
    report = Report(version, matrix_for(parsed), len(model.graph.node),
                    dla_gpu_fallback=[] if dla else None)
    for index, node in enumerate(model.graph.node):
        name = node.name or f"#{index} {node.op_type}"
        report.findings += [Finding(name, node.op_type, rule, detail)
                            for rule, detail in _node_findings(graph, node, parsed,
                                                               report.matrix)]
        if dla and node.op_type not in DLA_NO_LAYER and not graph.shape_only(node):
            report.dla_gpu_fallback += [Finding(name, node.op_type, rule, detail)
                                        for rule, detail in _dla_findings(graph, node)]
    report.findings += graph.constant_findings()
    return report


class Graph:
    """The types, ranks, constants and consumers of a model's tensors."""

    def __init__(self, model: onnx.ModelProto):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # types then come from what the model declares
            inferred = model
        g = inferred.graph
        self.types: dict[str, int] = {}
        self.ranks: dict[str, int | None] = {}
        self.dims: dict[str, list[int | None]] = {}  # None: a dynamic dimension
        for info in (*g.input, *g.value_info, *g.output):
            tensor = info.type.tensor_type
            if tensor.elem_type:
                self.types[info.name] = tensor.elem_type
                self.ranks[info.name] = len(tensor.shape.dim) if tensor.HasField("shape") \
                    else None
                if tensor.HasField("shape"):
                    self.dims[info.name] = [d.dim_value if d.HasField("dim_value") else None
                                            for d in tensor.shape.dim]
        self.constants = {t.name: t for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = value
        for name, tensor in self.constants.items():
            self.types[name] = tensor.data_type
            self.ranks[name] = len(tensor.dims)
        self.inputs = {i.name for i in model.graph.input} - set(self.constants)
        self.outputs = {o.name for o in model.graph.output}
        self.consumers: dict[str, list] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for node in model.graph.node:
            for position, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, position))
            for name in node.output:
                self.producer[name] = node
        self.initializers = [t.name for t in model.graph.initializer]

    def shape_only(self, node) -> bool:
        """Whether ``node`` only computes shapes (``Shape``, or INT64 in and out): with the
        static profile DLA builds take, TensorRT knows those values while it builds."""
        return node.op_type == "Shape" or all(
            self.types.get(name) == TensorProto.INT64
            for name in (*node.input, *node.output) if name)

    def type_name(self, tensor: str) -> str | None:
        """The tensor's ONNX type name (``FLOAT``...), None when unknown."""
        elem = self.types.get(tensor)
        return TensorProto.DataType.Name(elem) if elem else None

    def constant_findings(self) -> list[Finding]:
        """Initializers of types TensorRT lacks (they belong to no node)."""
        findings = []
        for name in self.initializers:
            users = self.consumers.get(name) or []
            node = users[0][0] if users else None
            label = f"initializer '{name}'" + (f" of {node.name or node.op_type}" if node
                                                else "")
            for rule, detail in _tensor_type(self, name, edge=False):
                findings.append(Finding(label, node.op_type if node else "-", rule, detail))
        return findings


def _node_findings(graph: Graph, node, version: tuple[int, ...], matrix: str):
    """(rule, detail) for every rule ``node`` breaks."""
    op = node.op_type
    rule = OPS.get(op)
    if rule is None or node.domain not in ("", "ai.onnx"):
        yield "op:unlisted", f"{node.domain + '.' if node.domain else ''}{op} is not in the " \
            "preflight's table of NVIDIA's operator rows"
    elif version[:2] < rule.since:
        yield "attention:version" if op == "Attention" else rule.id, \
            f"{op} needs TensorRT >= {'.'.join(map(str, rule.since))}, the target is " \
            f"{'.'.join(map(str, version))}"
    else:
        allowed = rule.types[matrix]
        positions = range(len(node.input)) if rule.inputs is None else rule.inputs
        for position in positions:
            if position >= len(node.input) or not node.input[position]:
                continue
            tensor = node.input[position]
            kind = TENSORRT_TYPES.get(graph.type_name(tensor) or "")
            if kind is not None and kind not in allowed and not _qdq_zero_point(op, position):
                yield rule.id, f"input '{tensor}' is {kind}; the {matrix} row lists " \
                    f"{', '.join(sorted(allowed))}"
        if op == "Cast":
            yield from _cast(graph, node, allowed, matrix)
    for name in node.output:
        yield from _tensor_type(graph, name, edge=name in graph.outputs)
    if op not in QDQ:
        for name in (*node.input, *node.output):
            kind = TENSORRT_TYPES.get(graph.type_name(name) or "")
            if kind in QUANTIZED_TYPES:
                yield "qdq:quantized-only-through-qdq", f"'{name}' is {kind} outside Q/DQ"
    else:
        yield from _qdq(graph, node)
    if op == "Attention":
        yield from _attention(graph, node)
    if op == "Resize":
        yield from _resize(node)


def _tensor_type(graph: Graph, name: str, edge: bool):
    """The tensor rules for ``name`` (``edge``: a graph output)."""
    type_name = graph.type_name(name)
    if type_name is None:
        return
    if type_name == "DOUBLE":
        yield "tensor:fp64", f"'{name}' is DOUBLE"
    elif type_name not in TENSORRT_TYPES:
        yield "tensor:types", f"'{name}' is {type_name}, which TensorRT has no type for"
    elif type_name == "UINT8" and not edge:
        yield "tensor:uint8-edges", f"'{name}' is an intermediate UINT8 tensor"


def _cast(graph: Graph, node, allowed: frozenset, matrix: str):
    to = TensorProto.DataType.Name(_attr(node, "to", 0))
    source = graph.type_name(node.input[0])
    if TENSORRT_TYPES.get(to) not in allowed:
        yield "op:Cast", f"casts to {to}; the {matrix} row lists {', '.join(sorted(allowed))}"
    if "UINT8" in (to, source) and source is not None:
        other = source if to == "UINT8" else to
        if other not in ("FLOAT", "FLOAT16", "UINT8"):
            yield "cast:uint8", f"casts {source} to {to}"


def _qdq(graph: Graph, node):
    """Zero points, per-tensor activations and per-channel weights."""
    if len(node.input) > 2 and node.input[2]:
        zero = graph.constants.get(node.input[2])
        if zero is None:
            yield "qdq:zero-point", f"zero point '{node.input[2]}' is not a constant"
        elif zero.data_type == TensorProto.UINT8:
            yield "qdq:zero-point", f"zero point '{node.input[2]}' is UINT8"
        elif np.any(numpy_helper.to_array(zero) != 0):
            yield "qdq:zero-point", f"zero point '{node.input[2]}' is not 0"
    scale = graph.constants.get(node.input[1]) if len(node.input) > 1 else None
    count = int(np.prod(scale.dims)) if scale is not None else 1
    if count <= 1:
        return
    if not _is_weight(graph, node):
        yield "qdq:per-tensor-activations", f"activation '{node.input[0]}' has {count} " \
            "scales (per channel)"
        return
    axis = _attr(node, "axis", 1)
    rank = graph.ranks.get(node.input[0])
    for consumer in _weight_consumers(graph, node):
        if rank is None or consumer.op_type not in WEIGHT_AXIS:
            continue
        wanted = WEIGHT_AXIS[consumer.op_type](rank, consumer)
        if axis % rank != wanted:
            yield "qdq:per-channel-weights", f"weights '{node.input[0]}' scaled per axis " \
                f"{axis}; {consumer.op_type} '{consumer.name}' needs axis {wanted}"


def _is_weight(graph: Graph, node) -> bool:
    """Whether a Q/DQ node quantises a constant (weights), directly or through its Q."""
    source = node.input[0]
    if source in graph.constants:
        return True
    producer = graph.producer.get(source)
    return node.op_type == "DequantizeLinear" and producer is not None \
        and producer.op_type == "QuantizeLinear" and producer.input[0] in graph.constants


def _weight_consumers(graph: Graph, node):
    """The nodes that read a weight DQ's output as their weights (input 1)."""
    if node.op_type == "QuantizeLinear":
        for dq, _ in graph.consumers.get(node.output[0], []):
            yield from _weight_consumers(graph, dq)
        return
    for consumer, position in graph.consumers.get(node.output[0], []):
        if position == 1:
            yield consumer


def _attention(graph: Graph, node):
    for position, role in enumerate("QKV"):
        if position < len(node.input) and node.input[position]:
            rank = graph.ranks.get(node.input[position])
            if rank != 4:
                yield "attention:4d", f"{role} '{node.input[position]}' is " + (
                    "of unknown rank" if rank is None else f"{rank}-D")
    for name in ("q_num_heads", "kv_num_heads"):
        if any(a.name == name for a in node.attribute):
            yield "attention:4d", f"attribute {name} is set"


def _resize(node):
    mode = _attr(node, "mode", b"nearest")
    coordinates = _attr(node, "coordinate_transformation_mode", b"half_pixel")
    mode, coordinates = (v.decode() if isinstance(v, bytes) else v for v in (mode, coordinates))
    if mode not in RESIZE_MODES:
        yield "resize:modes", f"mode '{mode}'"
    if coordinates not in RESIZE_COORDINATES:
        yield "resize:modes", f"coordinate_transformation_mode '{coordinates}'"
    if _attr(node, "antialias", 0):
        yield "resize:modes", "antialias is set"


def _dla_findings(graph: Graph, node):
    """(rule, detail) for each DLA restriction that leaves ``node`` to the GPU."""
    op = node.op_type
    layer = DLA_LAYERS.get(op)
    if op == "MatMul" and node.input[1] not in graph.constants:
        layer = None  # two computed operands: no Fully Connected layer
    if layer is None:
        yield "dla:layer", f"{op} becomes no layer DLA runs"
        return
    # static shapes: the build refuses a DLA profile that is not (resolve_options), and
    # shapes computed from the input's are known to TensorRT once the profile is
    large = [name for name in (*node.input, *node.output) if name
             and max((d or 0 for d in graph.dims.get(name, [])[1:]), default=0) > DLA_MAX_SIDE]
    if large:
        yield "dla:dims", f"'{large[0]}' {graph.dims[large[0]]} has a dimension over " \
            f"{DLA_MAX_SIDE}"
    yield from _dla_limits(graph, node, layer)


def _dla_limits(graph: Graph, node, layer: str):
    rank = graph.ranks.get(node.input[0])
    spatial = layer in ("Convolution", "Deconvolution", *DLA_ELEMENTWISE_RANK)
    if spatial and rank != 4:
        yield "dla:limits", f"{layer} on a {rank}-D tensor (DLA: 2-D, NCHW)"
    if layer == "Comparison":
        yield "dla:limits", "comparisons run on DLA in INT8 only (DLA builds here are FP16)"
    elif layer == "Concatenation":
        axis = _attr(node, "axis", 0)
        if len(node.input) < 2 or rank is None or axis % rank != 1:
            yield "dla:limits", f"concatenation on axis {axis} (DLA: the channel axis)"
    elif layer == "Convolution" and rank == 4:
        name = node.input[1]
        weights = list(graph.constants[name].dims) if name in graph.constants \
            else graph.dims.get(name)
        kernel = _attr(node, "kernel_shape", weights[2:] if weights else [])
        strides = _attr(node, "strides", [1, 1])
        channels = weights[:2] if weights else []
        if not all(DLA_KERNEL[0] <= k <= DLA_KERNEL[1] for k in kernel) \
                or not all(DLA_STRIDE[0] <= s <= DLA_STRIDE[1] for s in strides) \
                or any(c and c > DLA_MAX_SIDE for c in channels):
            yield "dla:limits", f"convolution kernel {list(kernel)}, strides " \
                f"{list(strides)}, channels {channels}"
    elif layer == "Deconvolution" and (
            _attr(node, "group", 1) != 1 or any(_attr(node, "pads", [0]))
            or any(d != 1 for d in _attr(node, "dilations", [1]))):
        yield "dla:limits", "a grouped, dilated or padded deconvolution"


def _qdq_zero_point(op: str, position: int) -> bool:
    return op in QDQ and position == 2


def _attr(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


__all__ = ["DEFAULT_VERSION", "Finding", "PreflightError", "Report", "check_before_parse",
           "preflight", "target_version"]
