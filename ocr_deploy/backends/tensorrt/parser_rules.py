"""NVIDIA's published rules for what TensorRT's ONNX parser takes: one table, each rule with
its source. Facts only, in our words, read from NVIDIA's files; not a TensorRT run.

Sources (abbreviated in the table):

- ``OPS101``: onnx/onnx-tensorrt ``docs/operators.md`` at tag ``release/10.1-GA`` (commit
  96e7811), the newest copy at or below JetPack 6's TensorRT 10.3; line numbers are that
  file's. It judges every target below 10.15.
- ``OPS1015``: the same file as shipped for TensorRT 10.15 (its heading: opset 9 to 24); rows
  cited by operator. It judges 10.15 and later, 11.x included (no newer copy was read).
- ``IMPORTER``: the 10.1-GA parser source, ``ModelImporter.cpp`` / ``onnxOpImporters.cpp``.
- ``CHANGELOG``: onnx-tensorrt ``docs/Changelog.md``, "TensorRT 10.14 GA Release".
- ``DATATYPE``: TensorRT's Python API reference, ``tensorrt.DataType`` (UINT8 entry).
- ``QUANT``: TensorRT developer guide, "Working with Quantized Types", explicit
  quantization (Q/DQ) section.
- ``DLA``: TensorRT developer guide, "Working with DLA", "DLA Supported Layers and
  Restrictions".

Where two sources disagree the stricter reading is taken, and the rule says so
(``stricter``). Type names are the matrices' (FP32, FP16, BF16, INT32, INT64, INT8, UINT8,
BOOL, FP8, INT4, FP4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPS101 = "onnx/onnx-tensorrt docs/operators.md @ release/10.1-GA (96e7811)"
OPS1015 = "onnx/onnx-tensorrt docs/operators.md, TensorRT 10.15 copy"
IMPORTER = "onnx/onnx-tensorrt @ release/10.1-GA (96e7811)"
CHANGELOG = "onnx/onnx-tensorrt docs/Changelog.md, 'TensorRT 10.14 GA Release'"
DATATYPE = "TensorRT Python API reference, tensorrt.DataType, UINT8"
QUANT = "TensorRT developer guide, 'Working with Quantized Types', explicit quantization"
DLA = "TensorRT developer guide, 'Working with DLA', 'DLA Supported Layers and Restrictions'"

MATRIX_101, MATRIX_1015 = "10.1-GA", "10.15"
MATRIX_1015_FROM = (10, 15)  # targets from here on are judged by the 10.15 copy


def matrix_for(version: tuple[int, ...]) -> str:
    """The operator matrix that judges TensorRT ``version``."""
    return MATRIX_1015 if tuple(version[:2]) >= MATRIX_1015_FROM else MATRIX_101


@dataclass(frozen=True)
class Rule:
    """One rule. Operator rules (``op`` set) list the data types each matrix gives the op
    (``types``: matrix -> type names; a matrix without the op: unsupported there) for the
    inputs at ``inputs`` (None: every input; index and shape inputs are left out, the
    parser converts them); ``since``: the first TensorRT version that has the op."""

    id: str
    summary: str
    source: str
    stricter: str = ""
    op: str | None = None
    types: dict[str, frozenset[str]] = field(default_factory=dict)
    inputs: tuple[int, ...] | None = None
    since: tuple[int, int] = (10, 0)

    def to_dict(self) -> dict:
        return {"id": self.id, "summary": self.summary, "source": self.source,
                **({"stricter": self.stricter} if self.stricter else {}),
                **({"types": {m: sorted(t) for m, t in self.types.items()}} if self.op else {})}


_FLOAT = "FP32 FP16 BF16"
_NUMERIC = f"{_FLOAT} INT32 INT64"
_ANY = f"{_NUMERIC} BOOL"


def _op(name: str, types: str, line: int, inputs: tuple[int, ...] | None = None,
        newer: str | None = None, since: tuple[int, int] = (10, 0), stricter: str = "",
        only_newer: bool = False) -> Rule:
    """An operator row: ``types`` in both matrices (``newer``: the 10.15 row where it
    differs; ``only_newer``: an op the 10.1 matrix lacks, added in ``since``: targets from
    ``since`` to 10.14 are judged by its 10.15 row, the only one read)."""
    rows = {MATRIX_1015: frozenset((newer or types).split())}
    rows[MATRIX_101] = rows[MATRIX_1015] if only_newer else frozenset(types.split())
    where = f"{OPS1015}, row {name}" if only_newer else \
        f"{OPS101}, line {line}; {OPS1015}, row {name}"
    return Rule(f"op:{name}", f"{name} takes {'/'.join(sorted(rows[MATRIX_1015]))} "
                f"{'inputs' if inputs is None else f'input(s) {list(inputs)}'}", where,
                stricter, name, rows, inputs, since)


# every op type the project's graphs use (cores as ocr-export writes them, the attention
# forms, FP16 casts, Q/DQ, the end-to-end wrapper), and the common CNN ops of other exports
OP_RULES = (
    _op("Abs", _NUMERIC, 19),
    _op("Add", _NUMERIC, 22),
    _op("And", "BOOL", 24),
    _op("ArgMax", _NUMERIC, 25, (0,)),
    _op("Attention", "", 0, (0, 1, 2), newer=f"{_FLOAT} INT8 FP8", since=(10, 14),
        only_newer=True),
    _op("AveragePool", _FLOAT, 31),
    _op("BatchNormalization", _FLOAT, 32),
    _op("Cast", f"{_ANY} UINT8", 40, (0,)),
    _op("Ceil", _FLOAT, 42),
    _op("Clip", _FLOAT, 46),
    _op("Concat", _ANY, 48),
    _op("Constant", _ANY, 50),
    _op("ConstantOfShape", _ANY, 51, ()),
    _op("Conv", _FLOAT, 52),
    _op("ConvTranspose", _FLOAT, 54),
    _op("DepthToSpace", _NUMERIC, 60),
    _op("DequantizeLinear", "INT8 FP8 INT4", 61, (0,), newer="INT8 FP8 FP4 INT4"),
    _op("Div", _NUMERIC, 63),
    _op("Dropout", _FLOAT, 64, (0,)),
    _op("Einsum", _FLOAT, 66),
    _op("Elu", _FLOAT, 67),
    _op("Equal", _NUMERIC, 68),
    _op("Erf", _FLOAT, 69),
    _op("Exp", _FLOAT, 70),
    _op("Expand", _ANY, 71, (0,)),
    _op("Flatten", _ANY, 73),
    _op("Floor", _FLOAT, 74),
    _op("Gather", _ANY, 75, (0,),
        stricter="the Gather importer also refuses UINT8 data outright "
                 "(onnxOpImporters.cpp line 1926)"),
    _op("Gelu", f"{_NUMERIC} INT8", 78),
    _op("Gemm", _FLOAT, 79),
    _op("GlobalAveragePool", _FLOAT, 80),
    _op("Greater", _NUMERIC, 83),
    _op("GreaterOrEqual", _NUMERIC, 84),
    _op("HardSigmoid", _FLOAT, 90),
    _op("HardSwish", _FLOAT, 91),
    _op("Identity", _ANY, 93),
    _op("If", _ANY, 94, ()),
    _op("InstanceNormalization", _FLOAT, 97),
    _op("LayerNormalization", _FLOAT, 100),
    _op("LeakyRelu", _FLOAT, 101),
    _op("Less", _NUMERIC, 102),
    _op("LessOrEqual", _NUMERIC, 103),
    _op("Log", _FLOAT, 104),
    _op("MatMul", _FLOAT, 111),
    _op("Max", _NUMERIC, 113),
    _op("MaxPool", _FLOAT, 114, (0,)),
    _op("Min", _NUMERIC, 120),
    _op("Mod", _NUMERIC, 122),
    _op("Mul", _NUMERIC, 123),
    _op("Neg", _NUMERIC, 125),
    _op("NonZero", "FP32 FP16", 128,
        stricter="the row lists no BOOL or integer input: a mask goes through FP32 first"),
    _op("Not", "BOOL", 129),
    _op("Or", "BOOL", 134),
    _op("Pad", _NUMERIC, 135, (0, 2)),
    _op("Pow", _FLOAT, 137, newer=_NUMERIC),
    _op("PRelu", _FLOAT, 138),
    _op("QuantizeLinear", _FLOAT, 141, (0,)),
    _op("Range", _NUMERIC, 146),
    _op("Reciprocal", _FLOAT, 147),
    _op("ReduceMax", _NUMERIC, 152, (0,)),
    _op("ReduceMean", _NUMERIC, 153, (0,)),
    _op("ReduceSum", _NUMERIC, 156, (0,)),
    _op("Relu", _NUMERIC, 159),
    _op("Reshape", _ANY, 160, (0,)),
    _op("Resize", _FLOAT, 161, (0,)),
    _op("Round", _FLOAT, 165),
    _op("ScatterND", _NUMERIC, 171, (0, 2),
        stricter="the row lists no UINT8 or BOOL data"),
    _op("Shape", _ANY, 180, (0,),
        stricter="no UINT8 in the row although UINT8 network inputs exist: Shape of a "
                 "uint8 input is refused"),
    _op("Sigmoid", _FLOAT, 182),
    _op("Sign", _NUMERIC, 183),
    _op("Slice", _ANY, 187, (0,)),
    _op("Softmax", _FLOAT, 188),
    _op("Softplus", _FLOAT, 190),
    _op("Split", _ANY, 193, (0,)),
    _op("Sqrt", _FLOAT, 195),
    _op("Squeeze", _ANY, 196, (0,)),
    _op("Sub", _NUMERIC, 200),
    _op("Tanh", _FLOAT, 203),
    _op("Tile", _ANY, 206, (0,)),
    _op("TopK", _NUMERIC, 207, (0,)),
    _op("Transpose", _ANY, 208),
    _op("Unsqueeze", _ANY, 211, (0,)),
    _op("Upsample", _FLOAT, 212, (0,)),
    _op("Where", _ANY, 213, (1, 2)),
)

# the TensorRT data types as ONNX names them (operators.md's list; DOUBLE: cast down)
TENSORRT_TYPES = {"FLOAT": "FP32", "FLOAT16": "FP16", "BFLOAT16": "BF16", "INT32": "INT32",
                  "INT64": "INT64", "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL",
                  "FLOAT8E4M3FN": "FP8", "INT4": "INT4", "FLOAT4E2M1": "FP4"}
QUANTIZED_TYPES = ("INT8", "FP8", "INT4", "FP4")

GRAPH_RULES = (
    Rule("tensor:types", "every tensor has a TensorRT type: no UINT16, UINT32, UINT64, INT16, "
         "string or complex tensors", f"{OPS101}, line 7 (the list of ONNX data types "
         "TensorRT supports); tensorrt.DataType has no 16-bit integer"),
    Rule("tensor:fp64", "no DOUBLE tensor, constant or computed", f"{OPS101}, line 9 "
         "(limited DOUBLE support: cast down to FLOAT, clamped to +-FLT_MAX)",
         stricter="the matrix casts DOUBLE down rather than refusing it; the preflight "
                  "refuses it, because the arithmetic would silently run in FP32"),
    Rule("tensor:uint8-edges", "UINT8 only as a network input or output: no intermediate "
         "UINT8 tensor or UINT8 constant", f"{OPS101}, line 13; {IMPORTER} ModelImporter.cpp "
         "lines 241-254 (a node output of UINT8 that is not a graph output is refused)"),
    Rule("cast:uint8", "a Cast from or to UINT8 has FP32 or FP16 on its other side",
         f"{DATATYPE} (uint8 converts only to and from float32/float16); the 8.5 parser's "
         f"Cast importer asserted the same; {OPS101}, line 40 lists UINT8 for Cast",
         stricter="the matrix lists UINT8 among Cast's types without naming the other side; "
                  "the DataType reference restricts it to float32/float16: the stricter "
                  "reading is taken"),
    Rule("tensor:int64", "INT64 is a TensorRT type since 10.0: judged per operator row "
         "(INT64 network inputs and outputs only draw a binding warning)",
         f"{IMPORTER} ModelImporter.cpp lines 418 and 795; {OPS101}, line 7"),
    Rule("qdq:quantized-only-through-qdq", "INT8/FP8/INT4 tensors only as QuantizeLinear "
         "outputs and DequantizeLinear inputs (and Q/DQ zero points)",
         f"{OPS101}, line 11; {QUANT}"),
    Rule("qdq:zero-point", "Q/DQ zero points are 0 and not UINT8", f"{OPS101}, lines 61 and "
         f"141; {IMPORTER} onnxOpImporters.cpp line 1459 (a UINT8 zero point is read as INT8)",
         stricter="the importer reinterprets a UINT8 zero point as INT8 with a warning; "
                  "the preflight refuses it, because the values would change"),
    Rule("qdq:per-tensor-activations", "activations (Q/DQ of a computed tensor) are "
         "quantised per tensor: one scale", QUANT),
    Rule("qdq:per-channel-weights", "per-channel weight scales lie on the output-channel "
         "axis of the consumer (Conv: 0, ConvTranspose: 1, MatMul: the last, Gemm: 0 with "
         "transB, else 1)", QUANT),
    Rule("attention:4d", "Attention's Q, K and V are 4-D [batch, heads, sequence, head "
         "size]; heads come from the shapes, not q_num_heads/kv_num_heads",
         f"{OPS1015}, row Attention"),
    Rule("attention:version", "the Attention op needs TensorRT >= 10.14", CHANGELOG),
    Rule("op:unlisted", "an op type the table does not list is treated as unsupported",
         f"{OPS101}; {OPS1015}",
         stricter="the matrices list more operators than this table; one outside it is "
                  "not judged supported until its row is added here"),
    Rule("resize:modes", "Resize: mode nearest or linear, no antialias; coordinate "
         "transformation half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric "
         "or align_corners", f"{OPS101}, line 161; {OPS1015}, row Resize"),
    Rule("dla:layer", "on DLA, an op that maps to no layer of DLA's support summary runs on "
         "the GPU (GPU fallback)", f"{DLA}, 'Layer Support and Restrictions' (Table 'DLA Layer "
         "Support Summary')",
         stricter="ops are mapped to TensorRT layers by the parser's usual import (Conv -> "
                  "Convolution, Transpose/Reshape -> Shuffle, ...); MatMul counts as Fully "
                  "Connected only with constant weights"),
    Rule("dla:limits", "on DLA: convolutions 2-D with kernel 1-32, stride 1-8, at most 8192 "
         "channels; deconvolutions ungrouped, undilated, unpadded; concatenation on the "
         "channel axis of >= 2 inputs; activations ReLU/Sigmoid/TanH/Clip/LeakyReLU and "
         "elementwise Sum/Sub/Prod/Max/Min/Div/Pow on 4-D tensors; comparisons in INT8 "
         "only (an FP16 build's run on the GPU)", f"{DLA}, Table 'DLA Layer Support "
         "Summary', the rows of those layers",
         stricter="the limits of the pooling, resize, scale, shuffle, slice, softmax and unary "
                  "rows are not checked: those layers count as DLA layers here"),
    Rule("dla:dims", "on DLA, non-batch dimensions are at most 8192 (and static: the build "
         "takes only a static profile for DLA)", f"{DLA}, 'General Restrictions'"),
)

# ONNX op -> the TensorRT layer it becomes, for the ops whose layer is in DLA's summary table
DLA_LAYERS = {
    "Conv": "Convolution", "MatMul": "Fully Connected", "Gemm": "Fully Connected",
    "ConvTranspose": "Deconvolution", "Relu": "Activation", "Sigmoid": "Activation",
    "Tanh": "Activation", "Clip": "Activation", "LeakyRelu": "Activation",
    "PRelu": "Parametric ReLU", "Add": "ElementWise", "Sub": "ElementWise",
    "Mul": "ElementWise", "Div": "ElementWise", "Max": "ElementWise", "Min": "ElementWise",
    "Pow": "ElementWise", "Equal": "Comparison", "Greater": "Comparison", "Less": "Comparison",
    "Concat": "Concatenation", "MaxPool": "Pooling", "AveragePool": "Pooling",
    "BatchNormalization": "Scale", "Resize": "Resize", "Transpose": "Shuffle",
    "Reshape": "Shuffle", "Flatten": "Shuffle", "Squeeze": "Shuffle", "Unsqueeze": "Shuffle",
    "Slice": "Slice", "Split": "Slice", "Softmax": "SoftMax", "Abs": "Unary",
    "LRN": "LRN",
}
DLA_NO_LAYER = ("Constant", "Identity")  # no layer of their own (weights, aliases)

RULES = {rule.id: rule for rule in (*OP_RULES, *GRAPH_RULES)}
OPS = {rule.op: rule for rule in OP_RULES}
