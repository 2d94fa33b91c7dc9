"""What a Q/DQ placement is: which ops get Q/DQ nodes and with which quantisation types.

Each backend runs integer kernels for a different pattern, so the placement belongs to the
backend that will run the model: each backend package (``ocr_deploy.backends.*``) defines
its own and says why. ``precision.qdq`` applies one; ``precision.coverage`` judges the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    # activations the backend folds into the QuantizeLinear after them (its zero point clips)
    folded_activations: tuple[str, ...] = ()
    # what the layers outside Q/DQ compute in: "fp32", or "fp16" when the Q/DQ graph is
    # made from the FP16 graph (a strongly typed TensorRT network keeps the ONNX's types)
    float_type: str = "fp32"
    # the backend's own rules beyond ``op_types`` (``extra_inputs``), by name
    rules: tuple[str, ...] = ()

    def extra_inputs(self, model, exclude: list[str]) -> dict[str, list[tuple[str, int]]]:
        """Node inputs of the FP32 ``model`` that the backend's own rules quantise beyond
        the inputs of ``op_types``: ``{rule: [(node name, input index), ...]}``; none here
        (a backend's placement subclass says which)."""
        return {}

    def to_dict(self) -> dict:
        """JSON-ready (lists, not tuples), as stored in sidecars and metadata."""
        return {**asdict(self), "op_types": list(self.op_types),
                "kept_by_default": list(self.kept_by_default),
                "folded_activations": list(self.folded_activations),
                "rules": list(self.rules)}
