"""A model's tensors (its signature) checked against its metadata, so that a foreign graph
carrying copied ``ocr_deploy.*`` metadata, or metadata edited to lie about the graph, is
refused before anything runs: one image input with the metadata's name, layout, size and
channels; every output the metadata names, with the right rank, type, class count and
resolution; no other outputs. An end-to-end graph is checked against its ``end_to_end``
contract instead: a uint8 image input ``[batch, H, W, C]``, labels of the recorded dtype
``[batch, H, W]``, float scores ``[batch, H, W, K]`` when it has them (H, W: the fixed
size, or -1 for a side that varies). Used by the runtime (from the loaded backend) and the build
(``check_onnx``). Pure Python and ONNX: no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import ExportMetadata, read_metadata
from ocr_deploy.errors import MetadataError


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, shape (-1 where dynamic) and element type."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def onnx_signature(model) -> Signature:
    """The signature of an ``onnx.ModelProto`` (initializers listed as inputs excluded)."""
    from onnx import helper

    def tensor(info) -> Tensor:
        kind = info.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(kind.elem_type))
        except (KeyError, TypeError, ValueError):
            dtype = np.dtype(object)  # not a plain tensor type: never what we expect
        return Tensor(info.name, shape, dtype)

    weights = {t.name for t in model.graph.initializer}
    return Signature(tuple(tensor(i) for i in model.graph.input if i.name not in weights),
                     tuple(tensor(o) for o in model.graph.output))


def check_onnx(model_or_path, origin: object = None) -> ExportMetadata:
    """The validated metadata of an ONNX model (path or ``ModelProto``) whose graph fits it
    and computes its outputs; else ``MetadataError`` (exit 2)."""
    if isinstance(model_or_path, (str, Path)):
        import onnx

        origin = origin or model_or_path
        meta = read_metadata(model_or_path)
        model = onnx.load(str(model_or_path), load_external_data=False)
    else:
        model, meta = model_or_path, read_metadata(model_or_path, origin)
    check_signature(origin, meta, onnx_signature(model))
    produced = {name for node in model.graph.node for name in node.output}
    missing = [o.name for o in model.graph.output if o.name not in produced]
    if missing:
        raise MetadataError(origin, "a graph whose nodes compute its outputs",
                            f"{len(model.graph.node)} node(s), outputs {missing} computed by "
                            "none", "re-export the model with ocr-export")
    return meta


def check_signature(origin: object, meta: ExportMetadata, signature: Signature) -> None:
    """Check a graph's tensors against its (schema-valid) metadata; see the module docstring."""
    def refuse(expected: str, found: str) -> None:
        raise MetadataError(origin, expected, found, "this is not the graph its metadata "
                            "describes: re-export the model with ocr-export")

    if len(signature.inputs) != 1:
        refuse("one image input", f"{len(signature.inputs)} inputs "
               f"{[t.name for t in signature.inputs]}")
    if meta.end_to_end:
        _check_end_to_end(signature, meta, refuse)
        return
    (image,) = signature.inputs
    if image.name != meta.input_name:
        refuse(f"the input '{meta.input_name}' named in its metadata", f"'{image.name}'")
    size = (meta.input_height, meta.input_width, meta.input_channels)
    expected = size if meta.input_layout == "NHWC" else (size[2], size[0], size[1])
    if len(image.shape) != 4 or not _fits(image.shape[1:], expected) \
            or image.dtype.kind != "f":
        refuse(f"a float input shaped [batch, {', '.join(map(str, expected))}] "
               f"({meta.input_layout}) as its metadata says",
               f"{list(image.shape)} of {image.dtype}")
    outputs = {t.name: t for t in signature.outputs}
    if set(outputs) != set(meta.outputs):
        refuse(f"the outputs {sorted(meta.outputs)} named in its metadata",
               f"outputs {sorted(outputs)}")
    for name, spec in meta.outputs.items():
        _check_output(outputs[name], spec, meta, refuse)


def _check_output(tensor: Tensor, spec: dict, meta: ExportMetadata, refuse) -> None:
    kind, layout = spec["kind"], spec.get("layout", meta.input_layout)
    labels = kind == "labels"
    what = "an integer label map [batch, H, W]" if labels else \
        f"float {kind} with {meta.num_classes} classes ({layout})"
    if len(tensor.shape) != (3 if labels else 4) or tensor.dtype.kind not in \
            ("iu" if labels else "f"):
        refuse(f"output '{tensor.name}' as {what}", f"{list(tensor.shape)} of {tensor.dtype}")
    hw = tensor.shape[2:4] if layout == "NCHW" and not labels else tensor.shape[1:3]
    if not labels:
        classes = tensor.shape[1] if layout == "NCHW" else tensor.shape[3]
        if classes not in (-1, meta.num_classes):
            refuse(f"output '{tensor.name}' as {what} (ocr_deploy.num_classes)",
                   f"{classes} classes, shape {list(tensor.shape)}")
    stride = spec.get("stride")
    if stride and hw[0] > 0 and max(1, round(meta.input_height / hw[0])) != stride:
        refuse(f"output '{tensor.name}' at 1/{stride} of the {meta.input_height}-pixel input "
               "height (its metadata's stride)", f"height {hw[0]}")


def _check_end_to_end(signature: Signature, meta: ExportMetadata, refuse) -> None:
    e2e = meta.end_to_end
    sides = meta.sizes().sides  # a fixed side is that size; a dynamic side is -1
    where = ", ".join(str(s) if s != -1 else name for s, name in zip(sides, "HW", strict=True))
    (image,) = signature.inputs
    if image.name != e2e["input"] or image.dtype != np.uint8 or len(image.shape) != 4 \
            or tuple(image.shape[1:3]) != sides \
            or image.shape[3] not in (-1, meta.input_channels):
        refuse(f"the end-to-end input '{e2e['input']}' as uint8 [batch, {where}, "
               f"{meta.input_channels}]", f"'{image.name}' {list(image.shape)} of {image.dtype}")
    outputs = {t.name: t for t in signature.outputs}
    wanted = [e2e["labels"]] + ([e2e["scores"]] if e2e.get("scores") else [])
    if sorted(outputs) != sorted(wanted):
        refuse(f"the end-to-end outputs {sorted(wanted)}", f"outputs {sorted(outputs)}")
    labels = outputs[e2e["labels"]]
    if labels.dtype != np.dtype(e2e["label_dtype"]) or len(labels.shape) != 3 \
            or tuple(labels.shape[1:3]) != sides:
        refuse(f"output '{labels.name}' as {e2e['label_dtype']} labels [batch, {where}]",
               f"{list(labels.shape)} of {labels.dtype}")
    if e2e.get("scores"):
        scores = outputs[e2e["scores"]]
        if scores.dtype.kind != "f" or len(scores.shape) != 4 \
                or tuple(scores.shape[1:3]) != sides \
                or scores.shape[3] not in (-1, meta.num_classes):
            refuse(f"output '{scores.name}' as float scores [batch, {where}, "
                   f"{meta.num_classes}]", f"{list(scores.shape)} of {scores.dtype}")


def _fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return len(shape) == len(expected) and all(
        found in (-1, want) for found, want in zip(shape, expected, strict=True))


def check_contract(path: Path, metadata: ExportMetadata, runner) -> None:
    """Check that the tensors of the artifact a runner loaded fit its metadata, so later
    code never guesses; a mismatch is ``MetadataError`` (exit 2)."""
    def tensor(name: str, shape, dtype) -> Tensor:
        return Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype))

    inputs = (tensor(runner.input_name, runner.input_shape(1), runner.input_dtype),)
    outputs = tuple(tensor(n, runner.output_shape(n, 1), runner.output_dtype(n))
                    for n in runner.output_names)
    check_signature(path, metadata, Signature(inputs, outputs))
