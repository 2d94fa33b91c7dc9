"""Fold an attention scale into the weights that compute the query, when that is exact.

``softmax(s * Q @ K^T)`` equals ``softmax((s * Q) @ K^T)``. Walking back from Q through
ops that commute with a positive scale (reshapes, transposes, ReLU, max pooling) to the
op that last multiplied by constants (Conv, MatMul/Gemm with constant weights, Mul by a
constant, BatchNormalization), the scale can be multiplied into those constants, and
into the constants of any bias Add/Sub passed on the way. Multiplying by a power of two
changes only exponents, so the folded graph computes exactly ``s * Q``; the constants are
also checked to scale back exactly (no underflow). Anything else is not folded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ocr_deploy.graph.index import GraphIndex, add_constant

# f(c * x) == c * f(x) for c > 0, with the data as the first input
COMMUTING = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Relu",
             "MaxPool")
BIASES = ("Add", "Sub")  # c * (x + b) == c * x + c * b: scale b, walk on through x


@dataclass
class FoldPlan:
    """The constants to scale, as (node, input position) pairs, ending at ``target``."""

    steps: list[tuple]
    target: str  # "Conv 'name'", for the report


def is_power_of_two(factor: float) -> bool:
    """True for 2**n (n any integer), the factors that scale floats exactly."""
    return factor > 0 and math.frexp(factor)[0] == 0.5


def plan_fold(index: GraphIndex, tensor: str, factor: float) -> FoldPlan | str:
    """How to multiply ``tensor`` by ``factor`` through constants, or why it cannot be."""
    if not is_power_of_two(factor):
        return f"{factor:.9g} is not a power of two, so scaling weights would round"
    steps: list[tuple] = []
    name = tensor
    while True:
        node = index.producer.get(name)
        if node is None:
            return f"'{name}' is a graph input"
        if index.only_consumer(name) is None:
            return f"'{name}' is also read elsewhere"
        if node.op_type in COMMUTING:
            name = node.input[0]
            continue
        constants = [i for i, n in enumerate(node.input) if n and index.constant(n) is not None]
        where = f"{node.op_type} '{index.label(node)}'"
        if node.op_type in BIASES and len(node.input) == 2 and len(constants) == 1:
            steps.append((node, constants[0]))
            name = node.input[1 - constants[0]]
            continue
        terminal = _terminal_constants(node, constants)
        if terminal is None:
            return f"{where} does not multiply by constants"
        steps.extend((node, i) for i in terminal)
        return _checked(index, FoldPlan(steps, where), factor)


def _terminal_constants(node, constants: list[int]) -> list[int] | None:
    """The constant inputs to scale so that ``node``'s output is scaled, or None."""
    op, present = node.op_type, len([n for n in node.input if n])
    if op in ("Conv", "ConvTranspose", "Gemm") and 1 in constants:
        wanted = [1, 2] if present > 2 else [1]  # weights, and the bias when there is one
    elif op in ("MatMul", "Mul") and len(constants) == 1:
        wanted = constants
    elif op == "BatchNormalization":
        wanted = [1, 2]  # scale (gamma) and bias (beta)
    else:
        return None
    return wanted if all(i in constants for i in wanted) else None


def _checked(index: GraphIndex, plan: FoldPlan, factor: float) -> FoldPlan | str:
    for node, position in plan.steps:
        value = index.constant(node.input[position])
        if not np.issubdtype(value.dtype, np.floating):
            return f"{plan.target} has non-float constants"
        scaled = value * np.asarray(factor, value.dtype)
        if not np.array_equal(scaled / np.asarray(factor, value.dtype), value):
            return f"scaling the constants of {plan.target} would underflow"
    return plan


def apply_fold(model, index: GraphIndex, plan: FoldPlan, factor: float) -> list[str]:
    """Replace each planned constant by a scaled copy; returns the new constants' names."""
    names = []
    for node, position in plan.steps:
        value = index.constant(node.input[position])
        scaled = value * np.asarray(factor, value.dtype)
        name = add_constant(model, f"{node.input[position]}_scaled", scaled)
        node.input[position] = name
        names.append(name)
    return names
