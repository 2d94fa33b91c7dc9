"""The model cut into consecutive segments that run one after another, so that every node
runs once per batch while only one segment's outputs are held in memory.

Calibration reads many activations of each batch: at 512x1024 OCRNet's add up to 1.3 GiB
per sample, too much to return at once. The graph is cut, in its (topological) node order,
before the node that would take the current segment's outputs (the wanted tensors it makes
and the tensors later segments read) past the budget. A segment's session takes what it
reads from earlier segments as inputs. Cuts are made only where every tensor crossing them
has a known element type. Outputs are written into buffers reused batch after batch: one
pool for the outputs that die with their segment, one buffer per tensor crossing a cut.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from ocr_deploy.graph.index import names_read
from ocr_deploy.precision.shapes import static_shapes, tensor_types

# TF32 (on by default on Ampere and newer GPUs) would round FP32 activations to 10 bits.
CUDA_OPTIONS = {"use_tf32": "0"}


@dataclass
class _Segment:
    session: ort.InferenceSession
    inputs: list[str]  # read from earlier segments (or the graph input)
    outputs: list[str]  # the wanted tensors it makes, and tensors later segments read
    kept: set[str]  # outputs that later segments read
    released: list[str]  # inputs read for the last time here


class SegmentedModel:
    """``model`` cut into segments whose outputs fit ``memory_mib`` per sample; ``outputs``
    yields the ``wanted`` tensors of a batch, segment by segment."""

    def __init__(self, model: onnx.ModelProto, wanted: Sequence[str], memory_mib: int,
                 providers: Sequence[str]):
        self.input_name = model.graph.input[0].name
        self.wanted = set(wanted)
        nodes = _needed(model, self.wanted)
        reads = [_reads(node) for node in nodes]
        last_read = {name: index for index, names in enumerate(reads) for name in names}
        types = tensor_types(model)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.enable_cpu_mem_arena = False  # memory goes back between segments
        options.log_severity_level = 3
        chosen = [(p, CUDA_OPTIONS) if p == "CUDAExecutionProvider" else p for p in providers]
        available = {graph_input.name for graph_input in model.graph.input}
        self.segments: list[_Segment] = []
        for begin, end in _spans(model, nodes, last_read, self.wanted, memory_mib << 20,
                                 types):
            made = [name for node in nodes[begin:end] for name in node.output if name]
            inputs = list(dict.fromkeys(name for names in reads[begin:end] for name in names
                                        if name in available))
            outputs = [name for name in made
                       if name in self.wanted or last_read.get(name, -1) >= end]
            kept = {name for name in outputs if last_read.get(name, -1) >= end}
            released = [name for name in inputs if last_read[name] < end]
            cut = _segment_model(model, nodes[begin:end], inputs, outputs, types)
            session = ort.InferenceSession(cut.SerializeToString(), options, providers=chosen)
            self.segments.append(_Segment(session, inputs, outputs, kept, released))
            available.update(made)
        self._layouts: dict[tuple[int, int], list[tuple]] = {}  # (segment, batch) -> shapes
        self._buffers = _Buffers()

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def providers(self) -> list[str]:
        """The execution providers the sessions use (ONNX Runtime may have dropped some)."""
        return list(dict.fromkeys(p for s in self.segments for p in s.session.get_providers()))

    def outputs(self, batch: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, values)`` for every wanted tensor of ``batch``. The arrays are
        reused: each is valid until the next one is asked for."""
        held = {self.input_name: batch}
        if self.input_name in self.wanted:
            yield self.input_name, batch
        for index, segment in enumerate(self.segments):
            values = self._run(index, segment, {name: held[name] for name in segment.inputs},
                               len(batch))
            for name in segment.released:
                del held[name]
            for position, name in enumerate(segment.outputs):
                if name in segment.kept:
                    held[name] = values[position]
                if name in self.wanted:
                    yield name, values[position]
                values[position] = None
            del values

    def _run(self, index: int, segment: _Segment, feeds: dict[str, np.ndarray],
             batch: int) -> list[np.ndarray]:
        """The segment's outputs, written into reused buffers once their shapes are known
        (fresh arrays every run would cost page faults on every byte)."""
        layout = self._layouts.get((index, batch))
        if layout is None:  # the first batch of this size: ONNX Runtime allocates
            values = segment.session.run(segment.outputs, feeds)
            self._layouts[(index, batch)] = [(v.shape, v.dtype) for v in values]
            return values
        values = self._buffers.views(segment, layout)
        binding = segment.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name, value in zip(segment.outputs, values, strict=True):
            binding.bind_output(name, "cpu", 0, value.dtype, list(value.shape),
                                value.ctypes.data)
        segment.session.run_with_iobinding(binding)
        return values


class _Buffers:
    """Output memory reused batch after batch: one pool for a segment's outputs that die
    with it, and a buffer per tensor that later segments read."""

    ALIGN = 64

    def __init__(self):
        self.pool = np.empty(0, np.uint8)
        self.kept: dict[str, np.ndarray] = {}

    def views(self, segment: _Segment, layout: list[tuple]) -> list[np.ndarray]:
        """Arrays of the ``layout`` (shape, dtype per output) over the reused memory."""
        counts = [int(np.prod(shape)) for shape, _ in layout]
        sizes = [-(-count * np.dtype(dtype).itemsize // self.ALIGN) * self.ALIGN
                 for count, (_, dtype) in zip(counts, layout, strict=True)]
        pooled = sum(size for name, size in zip(segment.outputs, sizes, strict=True)
                     if name not in segment.kept)
        if self.pool.size < pooled:
            self.pool = np.empty(pooled, np.uint8)
        views, offset = [], 0
        for name, count, size, (shape, dtype) in zip(segment.outputs, counts, sizes, layout,
                                                      strict=True):
            if name not in segment.kept:
                memory, offset = self.pool[offset:offset + size], offset + size
            else:
                if name not in self.kept or self.kept[name].size < size:
                    self.kept[name] = np.empty(size, np.uint8)
                memory = self.kept[name][:size]
            views.append(memory.view(dtype)[:count].reshape(shape))
        return views


def _reads(node: onnx.NodeProto) -> list[str]:
    """The tensors ``node`` reads: its inputs and what its subgraphs read from outside."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else \
            list(attribute.graphs)
        for graph in subgraphs:
            names.extend(sorted(names_read(graph)))
    return names


def _needed(model: onnx.ModelProto, wanted: set[str]) -> list[onnx.NodeProto]:
    """The nodes ``wanted`` depends on, in graph order (exported graphs are sorted)."""
    needed = set(wanted)
    kept = []
    for node in reversed(model.graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(_reads(node))
    return kept[::-1]


def _spans(model: onnx.ModelProto, nodes: list[onnx.NodeProto], last_read: dict[str, int],
           wanted: set[str], budget: int, types: dict[str, int]) -> list[tuple[int, int]]:
    """``(begin, end)`` ranges of ``nodes``: a cut before node ``i`` where it would take the
    segment's outputs past ``budget`` bytes per sample and every tensor crossing is typed."""
    sizes = {name: 4 * int(np.prod(dims)) for name, dims in static_shapes(model).items()}
    crossing = {graph_input.name for graph_input in model.graph.input}  # made, read later
    held: dict[str, int] = {}  # the segment's outputs if it ended here, with their sizes
    begin, spans = 0, []
    for index, node in enumerate(nodes):
        crossing = {name for name in crossing if last_read.get(name, -1) >= index}
        held = {name: size for name, size in held.items()
                if name in wanted or last_read.get(name, -1) > index}
        made = {name: sizes.get(name, 0) for name in node.output
                if name in wanted or last_read.get(name, -1) > index}
        if index > begin and sum(held.values()) + sum(made.values()) > budget and \
                all(name in types for name in crossing):
            spans.append((begin, index))
            begin, held = index, {}
        held.update(made)
        crossing.update(name for name in node.output if name)
    return [*spans, (begin, len(nodes))] if nodes else []


def _segment_model(model: onnx.ModelProto, nodes: list, inputs: list[str], outputs: list[str],
                   types: dict[str, int]) -> onnx.ModelProto:
    """A model of ``nodes`` alone, reading ``inputs`` and giving ``outputs``."""
    read = {name for node in nodes for name in _reads(node)}
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    del graph.value_info[:]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend(onnx.helper.make_tensor_value_info(name, types[name], None)
                       for name in inputs)
    del graph.output[:]
    graph.output.extend(onnx.helper.make_tensor_value_info(
        name, types.get(name, onnx.TensorProto.FLOAT), None) for name in outputs)
    initializers = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return cut
