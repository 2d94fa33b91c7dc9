"""Where ONNX Runtime wants Q/DQ nodes, and which of its kernels are integer kernels.

Q/DQ around every op with an integer kernel (Conv, MatMul, Add, Concat, Resize, pooling;
Relu/Clip folded into the preceding Q), quantised bias, so the CPU optimiser fuses
``DQ -> op -> Q`` into QLinearConv / QLinearMatMul / QLinearAdd / QLinearConcat and the
graph stays in 8 bits between them (Q/DQ on Conv inputs only, TensorRT's placement, is
not fused: it ran 1.1-1.5x slower than FP32 here). Activation type per ONNX Runtime's
guidance for the CPU: U8 asymmetric activations with S8 weights on x86-64 (with 7-bit
weights, ``reduce_range``, on AVX2 CPUs without VNNI, where U8S8's VPMADDUBSW can
saturate); S8S8 symmetric on ARM64, where ONNX Runtime has symmetric quantised kernels.

Kept in float by default: OCRNet's softmax-weighted products (spatial gather and attention
core). The final classifier is quantised: with U8 activations it cost 0.002 mIoU points
and 0.05 % label agreement on the demo model (100 validation images), and leaving it in
float costs ~6 % of the time at Cityscapes scale (a float convolution with its layout
reorders and dequantisation on a 512-channel stride-4 map). The accuracy budget's
sensitivity search keeps it after all where a model needs it.
"""

from __future__ import annotations

import platform
from pathlib import Path

from ocr_deploy.precision.placement import Placement

OPS = ("Conv", "MatMul", "Add", "Concat", "Resize", "MaxPool", "AveragePool",
       "GlobalAveragePool", "Relu", "Clip")
FOLDED_ACTIVATIONS = ("Relu", "Clip")
# the kernels of ONNX Runtime's optimised graphs that compute in integers
INTEGER_KERNELS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
                   "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "NhwcQLinearConv",
                   "QGemm", "QLinearConvTranspose")
WARN_BELOW = 0.90  # an INT8 artifact with a smaller integer share of MACs gets a warning


def placement(machine: str | None = None, cpu_flags: set[str] | None = None) -> Placement:
    """The ONNX Runtime CPU placement for this machine (or the one described)."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return Placement(
            name="onnxruntime-s8s8", op_types=OPS, activation_type="int8",
            activation_symmetric=True, quantize_outputs=True, quantize_bias=True,
            reduce_range=False, kept_by_default=("attention",),
            folded_activations=FOLDED_ACTIVATIONS,
            reason="ARM64: S8 symmetric activations and S8 weights (ONNX Runtime's "
                   "symmetric quantised kernels)")
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return Placement(
        name="onnxruntime-u8s8", op_types=OPS, activation_type="uint8",
        activation_symmetric=False, quantize_outputs=True, quantize_bias=True,
        reduce_range=not vnni, kept_by_default=("attention",),
        folded_activations=FOLDED_ACTIVATIONS,
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
