"""A read-mostly view of an ONNX graph: producers, consumers, constants and shapes.

Graph passes in this package edit ``onnx.ModelProto`` objects directly (no extra IR):
this index answers the questions a pass asks while matching, and a few helpers keep the
graph valid while it is edited (unique names, constants, dead-node removal, ordering).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from ocr_deploy.errors import GraphError


class GraphIndex:
    """Producers, consumers, constants and inferred shapes of ``model.graph``.

    Build a new index after editing the graph; an index does not follow edits.
    """

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.producer = {out: node for node in self.graph.node for out in node.output if out}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.graph_outputs = {o.name for o in self.graph.output}
        self._shapes: dict[str, list | None] | None = None
        self.opset = opset_of(model)

    def label(self, node) -> str:
        """The node's name, or ``op_type@index`` when it has none."""
        if node.name:
            return node.name
        return f"{node.op_type}@{list(self.graph.node).index(node)}"

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or ``Constant`` output; None for computed tensors."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute and \
                node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def only_consumer(self, name: str):
        """The single node reading ``name``, or None (several readers, or a graph output)."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.graph_outputs:
            return None
        return readers[0]

    def shape(self, name: str) -> list | None:
        """Inferred dims (ints, or strings for symbolic ones); None when unknown."""
        if self._shapes is None:
            inferred = onnx.shape_inference.infer_shapes(self.model)
            values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
            self._shapes = {value.name: _dims(value) for value in values}
            for tensor in self.graph.initializer:
                self._shapes[tensor.name] = list(tensor.dims)
        return self._shapes.get(name)

    def rank(self, name: str) -> int | None:
        dims = self.shape(name)
        return None if dims is None else len(dims)


def opset_of(model) -> int:
    """The model's default-domain (ai.onnx) opset; 0 when it declares none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _dims(value) -> list | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor.shape.dim]


def unique_name(model, base: str) -> str:
    """A tensor/node name not used anywhere in ``model.graph`` yet."""
    used = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        used.update(node.input)
        used.update(node.output)
        used.add(node.name)
    used.update(v.name for v in [*model.graph.input, *model.graph.output])
    name, index = base, 1
    while name in used:
        name, index = f"{base}_{index}", index + 1
    return name


def add_constant(model, base: str, value: np.ndarray) -> str:
    """Add ``value`` as a new initializer and return its (unique) name."""
    name = unique_name(model, base)
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def remove_dead(model) -> list[str]:
    """Drop nodes whose outputs nobody reads, then unused initializers; return node names."""
    graph = model.graph
    removed = []
    while True:
        read = names_read(graph) | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(out in read for out in n.output if out)]
        if not dead:
            break
        for node in dead:
            removed.append(node.name or node.op_type)
            graph.node.remove(node)
    read = names_read(graph)
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)
    live = read | {out for node in graph.node for out in node.output}
    for info in [v for v in graph.value_info if v.name not in live]:
        graph.value_info.remove(info)
    return removed


def names_read(graph) -> set[str]:
    """Every tensor name a node reads, including reads from inside subgraphs."""
    read = set()
    for node in graph.node:
        read.update(node.input)
        for sub in subgraphs(node):
            read |= names_read(sub)
    return read


def subgraphs(node) -> list:
    """The graphs held in ``node``'s attributes (If, Loop, Scan bodies)."""
    found = []
    for attribute in node.attribute:
        found += [attribute.g] if attribute.type == AttributeProto.GRAPH else attribute.graphs
    return found


def toposort(model) -> None:
    """Reorder ``model.graph.node`` topologically, keeping the existing order where valid."""
    graph = model.graph
    nodes = list(graph.node)
    available = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    ordered, pending = [], nodes
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            names = ", ".join(n.name or n.op_type for n in waiting[:3])
            raise GraphError(None, "a graph whose nodes can be ordered (no cycle, every "
                             "input defined)", f"a cycle or a missing input near {names}",
                             "report this model: the converter or a graph pass broke it")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def name_nodes(model) -> None:
    """Give every unnamed node a unique name (``op_type_N``), so reports can cite it."""
    for position, node in enumerate(model.graph.node):
        if not node.name:
            node.name = unique_name(model, f"{node.op_type}_{position}")
