"""Add new nodes and constants to an ONNX graph under one name prefix.

Graph builders in this package (the end-to-end wrapper's resize, label and normalisation
steps) call ``Emitter.op`` the way one writes ONNX by hand, and get back the names of the
outputs; every name is unique in the model, constants of equal value are stored once.
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ocr_deploy.graph.index import subgraphs


class Emitter:
    """Nodes and initializers for ``model``, named ``prefix + hint`` (made unique)."""

    def __init__(self, model, prefix: str):
        self.model = model
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self._used = _names(model.graph)
        self._constants: dict[tuple, str] = {}

    def is_used(self, name: str) -> bool:
        """Whether ``name`` names anything in the model (or was emitted already)."""
        return name in self._used

    def name(self, hint: str) -> str:
        base = self.prefix + hint
        name, index = base, 1
        while name in self._used:
            name, index = f"{base}_{index}", index + 1
        self._used.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1,
           **attributes) -> str | list[str]:
        """Append one node; returns its output name (or names, when ``outputs`` > 1)."""
        hint = hint or op_type.lower()
        names = [self.name(hint if outputs == 1 else f"{hint}_{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.name(hint),
                                           **attributes))
        return names[0] if outputs == 1 else names

    def const(self, value, dtype=None, hint: str = "const") -> str:
        """An initializer holding ``value`` (as ``dtype``); equal constants are shared."""
        array = np.asarray(value, dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.name(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def commit(self) -> None:
        """Add what was emitted to the model's graph (callers sort it afterwards)."""
        self.model.graph.node.extend(self.nodes)
        self.model.graph.initializer.extend(self.initializers)
        self.nodes, self.initializers = [], []


def rename_tensor(graph, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere in ``graph``, subgraphs included."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for sub in subgraphs(node):
            rename_tensor(sub, old, new)
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        if value.name == old:
            value.name = new


def _names(graph) -> set[str]:
    used = {t.name for t in graph.initializer}
    used.update(v.name for v in [*graph.input, *graph.output, *graph.value_info])
    for node in graph.node:
        used.update(node.input)
        used.update(node.output)
        used.add(node.name)
        for sub in subgraphs(node):
            used |= _names(sub)
    return used
