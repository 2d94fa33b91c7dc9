"""Where Q/DQ nodes go, per backend: each backend runs integer kernels for a different
pattern, so the placement belongs to the backend that will run the model.

- TensorRT: Q/DQ on the inputs of Conv and MatMul only, symmetric INT8 activations, no
  output or bias quantisation. TensorRT fuses the rest (its recommended placement).
- ONNX Runtime (CPU): Q/DQ around every op with an integer kernel (Conv, MatMul, Add,
  Concat, Resize, pooling; Relu/Clip folded into the preceding Q), quantised bias, so its
  optimiser fuses ``DQ -> op -> Q`` into QLinearConv / QLinearMatMul / QLinearAdd /
  QLinearConcat and the graph stays in 8 bits between them. Activation type per ONNX
  Runtime's guidance for the CPU: U8 asymmetric activations with S8 weights on x86-64
  (with 7-bit weights, ``reduce_range``, on AVX2 CPUs without VNNI, where U8S8's
  VPMADDUBSW can saturate); S8S8 symmetric on ARM64, where ONNX Runtime has symmetric
  quantised convolution kernels.

What stays in higher precision by default is part of the placement. Both keep OCRNet's
softmax-weighted products (spatial gather and attention core). TensorRT also keeps the
final classifier. ONNX Runtime quantises it: with asymmetric U8 activations it cost 0.002
mIoU points and 0.05 % label agreement on the demo model (100 validation images), and
leaving it in float costs ~6 % of the time at Cityscapes scale (a float convolution with
its layout reorders and dequantisation on a 512-channel stride-4 map). The accuracy
budget's sensitivity search keeps it after all where a model needs it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Placement:
    """A Q/DQ placement and the quantisation types it uses."""

    name: str
    op_types: tuple[str, ...]
    activation_type: str  # "int8" or "uint8"
    activation_symmetric: bool
    quantize_outputs: bool  # Q/DQ also after the quantised ops
    quantize_bias: bool
    reduce_range: bool  # 7-bit weights
    reason: str
    kept_by_default: tuple[str, ...] = ("attention", "classifier")  # qdq.default_exclusions

    def to_dict(self) -> dict:
        """JSON-ready (lists, not tuples), as stored in sidecars and metadata."""
        return {**asdict(self), "op_types": list(self.op_types),
                "kept_by_default": list(self.kept_by_default)}


TENSORRT = Placement(
    name="tensorrt", op_types=("Conv", "MatMul"), activation_type="int8",
    activation_symmetric=True, quantize_outputs=False, quantize_bias=False,
    reduce_range=False,
    reason="TensorRT's recommended placement: Q/DQ on Conv/MatMul inputs, TensorRT fuses "
           "the rest; symmetric INT8 activations, as TensorRT requires")

ONNXRUNTIME_OPS = ("Conv", "MatMul", "Add", "Concat", "Resize", "MaxPool", "AveragePool",
                   "GlobalAveragePool", "Relu", "Clip")
# Activations ONNX Runtime folds into the QuantizeLinear after them (its zero point clips)
FOLDED_ACTIVATIONS = ("Relu", "Clip")


def onnxruntime_placement(machine: str | None = None, cpu_flags: set[str] | None = None
                          ) -> Placement:
    """The ONNX Runtime CPU placement for this machine (or the one described)."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return Placement(
            name="onnxruntime-s8s8", op_types=ONNXRUNTIME_OPS, activation_type="int8",
            activation_symmetric=True, quantize_outputs=True, quantize_bias=True,
            reduce_range=False, kept_by_default=("attention",),
            reason="ARM64: S8 symmetric activations and S8 weights (ONNX Runtime's "
                   "symmetric quantised kernels)")
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return Placement(
        name="onnxruntime-u8s8", op_types=ONNXRUNTIME_OPS, activation_type="uint8",
        activation_symmetric=False, quantize_outputs=True, quantize_bias=True,
        reduce_range=not vnni, kept_by_default=("attention",),
        reason="x86-64 with VNNI: U8 asymmetric activations, S8 weights" if vnni else
               "x86-64 without VNNI: U8 activations, 7-bit S8 weights (reduce_range) to "
               "avoid U8S8 saturation")


def _cpu_flags() -> set[str]:
    """The CPU feature flags of this Linux machine (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
