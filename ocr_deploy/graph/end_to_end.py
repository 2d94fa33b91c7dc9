"""End-to-end graphs: camera pixels in, label map out, pre- and post-processing inside.

``make_end_to_end(model, sizes)`` wraps an exported model's ONNX (FP32, an FP16 Cast
graph or an INT8 Q/DQ graph: the core is kept as it is) into a graph that does what the
runtime does around it (``contract.preprocess``, ``contract.postprocess``):

1. input ``image``: uint8 ``[N,H,W,C]`` (RGB or BGR) at a fixed size or any size in a range;
2. Pillow's BILINEAR resize to the model input, bit for bit (``graph.image_resize``);
3. the colour order (a channel ``Gather``) and the normalisation, folded into the first
   convolution where that is exact (``graph.input_fold``), else ``Sub``/``Mul``; the layout;
4. the model;
5. back to the image size (``graph.label_maps``): scores resized bilinearly then the argmax
   (form ``dense`` or ``boundary``), or a labels-only model's map resized nearest;
6. outputs ``labels`` (uint8 ``[N,H,W]``; beyond 256 classes uint16, int32 for TensorRT,
   which has no 16-bit integers) and optionally ``scores`` (float32 ``[N,H,W,K]``).

Fixed sizes get their sampling tables as constants; dynamic sizes compute them from the
image shape (float64 for ONNX Runtime: the same tables; float32 for TensorRT); a range
with one side fixed (720x960 to 720x1280) declares that side static, its tables constant.
Pre and post stay FP32 whatever the core's precision. The graph keeps the core's opset (13 or
later: the wrapper uses no newer op) and passes ``onnx.checker``'s full check.

Forms (``auto`` picks what the target backend's ``GraphTarget.forms`` say; each backend
package gives its reasons): labels ``dense``/``boundary``,
argmax ``argmax``/``compare``. ``metadata.end_to_end`` records the sizes, colour order,
label type, forms and folding (see ``ocr_deploy.contract.metadata``).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper

from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.contract.metadata import (
    E2E_INPUT,
    E2E_LABELS,
    E2E_SCORES,
    ExportMetadata,
    read_metadata,
    write_metadata,
)
from ocr_deploy.contract.postprocess import scores_output
from ocr_deploy.contract.preprocess import normalisation
from ocr_deploy.contract.signature import check_signature, onnx_signature
from ocr_deploy.errors import BadInputError, ConversionError
from ocr_deploy.graph.emit import Emitter, rename_tensor
from ocr_deploy.graph.image_resize import resize_image
from ocr_deploy.graph.index import opset_of, remove_dead, toposort
from ocr_deploy.graph.input_fold import fold_input
from ocr_deploy.graph.label_maps import (
    ARGMAX_FORMS,
    LABEL_FORMS,
    argmax,
    boundary_labels,
    dense_labels,
    nearest_labels,
)
from ocr_deploy.graph.target import GraphTarget, graph_target

INPUT, LABELS, SCORES = E2E_INPUT, E2E_LABELS, E2E_SCORES  # the graph's tensor names
COLOR_ORDERS = ("RGB", "BGR")
MIN_OPSET = 13  # axes as inputs (Squeeze, Unsqueeze, ReduceSum), Split sizes as an input
PREFIX = "e2e/"

def make_end_to_end(model: onnx.ModelProto, sizes: ImageSizes, color_order: str = "RGB",
                    scores: bool = False, labels_form: str = "auto",
                    argmax_form: str = "auto", target: GraphTarget | str = "onnxruntime",
                    meta: ExportMetadata | None = None, source: object = None
                    ) -> tuple[onnx.ModelProto, ExportMetadata]:
    """The end-to-end graph around ``model`` (not modified) and its metadata (also written
    into the graph). ``meta``: the model's metadata (default: read from it); ``source``
    names the model in errors. Bad arguments are ``BadInputError``."""
    meta = meta or read_metadata(model, source)
    check_signature(source, meta, onnx_signature(model))
    target = graph_target(target)
    validate_request(meta, sizes, color_order, scores, labels_form, argmax_form, source)
    opset = opset_of(model)
    if opset < MIN_OPSET:
        raise BadInputError(source, f"a model of opset {MIN_OPSET} or later", f"opset {opset}",
                            "export it again with ocr-export (opset 17 by default)")
    wrapped = copy.deepcopy(model)
    graph = wrapped.graph
    names = _free_public_names(wrapped, meta)
    emit = Emitter(wrapped, PREFIX)
    forms = _forms(labels_form, argmax_form, target, scores, meta, sizes)
    table_dtype = np.float64 if target.float64 else np.float32
    core_input = next(i for i in graph.input if i.name == names[meta.input_name])
    batch = _dim(core_input.type.tensor_type.shape.dim[0])
    size, normalization = _model_input(emit, wrapped, meta, core_input, sizes, color_order,
                                       table_dtype, target)
    label_type = _label_type(meta.num_classes, target)
    labels, resized = _labels(emit, wrapped, meta, names, size, sizes, forms, label_type,
                              scores, table_dtype, target)
    emit.commit()
    rename_tensor(graph, labels, LABELS)
    if resized is not None:
        rename_tensor(graph, resized, SCORES)
    sides = [low if low == high else name for low, high, name in  # each side by itself
             zip(sizes.minimum, sizes.maximum, ("height", "width"), strict=True)]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(
        INPUT, TensorProto.UINT8, [batch, *sides, meta.input_channels]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LABELS, label_type, [batch, *sides]))
    if resized is not None:
        graph.output.append(helper.make_tensor_value_info(
            SCORES, TensorProto.FLOAT, [batch, *sides, meta.num_classes]))
    remove_dead(wrapped)
    toposort(wrapped)
    e2e = {"input": INPUT, "labels": LABELS, "scores": SCORES if scores else None,
           **sizes.to_dict(), "color_order": color_order,
           "label_dtype": np.dtype(helper.tensor_dtype_to_np_dtype(label_type)).name,
           "target": target.name, "forms": forms, "normalization": normalization, "parity": {}}
    wrapped_meta = replace(meta, end_to_end=e2e)
    write_metadata(wrapped, wrapped_meta)
    try:
        onnx.checker.check_model(wrapped, full_check=True)
    except Exception as exc:
        raise ConversionError(source, "a valid end-to-end graph", f"onnx.checker: {exc}"[:300],
                              "report the model") from exc
    return wrapped, wrapped_meta


def _model_input(emit: Emitter, model, meta: ExportMetadata, core_input, sizes: ImageSizes,
                 color_order: str, table_dtype, target: GraphTarget) -> tuple[tuple, dict]:
    """Steps 1-3: the uint8 ``image`` -> the model's input, which from now on is computed
    (the core reads it under the new name); returns the image size (ints, or int64 scalar
    tensors when dynamic) and what was folded into the first convolution."""
    image = INPUT
    if not target.uint8_compute:
        # uint8 only at the edges (TensorRT converts uint8 only to and from float32/float16):
        # float32 first, exact for 0..255; the shape is read from it, not from the uint8 input
        image = emit.op("Cast", [INPUT], "image_float", to=TensorProto.FLOAT)
    if sizes.is_fixed:
        size = sizes.minimum
    else:
        shape = emit.op("Shape", [image], "image_shape")  # a fixed side stays a constant
        size = tuple(low if low == high else emit.op(
            "Gather", [shape, emit.const(axis, np.int64)], "image_side", axis=0)
            for axis, low, high in zip((1, 2), sizes.minimum, sizes.maximum, strict=True))
    swap = meta.input_channels == 3 and color_order != meta.color_order
    channels = [2, 1, 0] if swap else list(range(meta.input_channels))
    planar = resize_image(emit, image, size, (meta.input_height, meta.input_width),
                          sizes.maximum, channels, table_dtype,
                          uint8_layout=target.uint8_layout)
    x, normalization = _normalise(emit, model, planar, core_input.name, meta)
    if meta.input_layout == "NHWC":
        x = emit.op("Transpose", [x], "model_layout", perm=[0, 2, 3, 1])
    elem = core_input.type.tensor_type.elem_type
    if elem != TensorProto.FLOAT:
        x = emit.op("Cast", [x], "model_dtype", to=elem)
    rename_tensor(model.graph, core_input.name, x)
    return size, normalization


def validate_request(meta: ExportMetadata, sizes: ImageSizes, color_order: str,
                     scores: bool, labels_form: str, argmax_form: str, source) -> None:
    """What ``make_end_to_end`` refuses, checked before any slow work
    (``BadInputError``)."""
    if meta.end_to_end:
        raise BadInputError(source, "a plain exported model", "an end-to-end one",
                            "wrap the exported (or precision) model, not an end-to-end one")
    sizes.validate()
    for what, value, allowed in (("colour order", color_order, COLOR_ORDERS),
                                 ("labels form", labels_form, ("auto", *LABEL_FORMS)),
                                 ("argmax form", argmax_form, ("auto", *ARGMAX_FORMS))):
        if value not in allowed:
            raise BadInputError(None, f"a {what} among {', '.join(allowed)}", repr(value),
                                "pick one of them")
    if scores and scores_output(meta) is None:
        raise BadInputError(source, "a model with a logits output for scores",
                            "a labels-only model", "export without --labels-only, or drop "
                            "the scores output")
    if scores and labels_form == "boundary":
        raise BadInputError(None, "labels form 'dense' or 'auto' with a scores output",
                            "'boundary'", "the resized scores give the labels already: "
                            "use 'auto'")


def _forms(labels_form: str, argmax_form: str, target: GraphTarget, scores: bool,
           meta: ExportMetadata, sizes: ImageSizes) -> dict:
    """The forms used and why (JSON-ready, for the metadata)."""
    auto = target.forms
    chosen = {}
    for step, asked in (("labels", labels_form), ("argmax", argmax_form)):
        form, why = auto[step] if asked == "auto" else (asked, "requested")
        chosen[step], chosen[f"{step}_reason"] = form, why
    if scores_output(meta) is None:
        chosen.update(labels="nearest", labels_reason="a labels-only model: its map is "
                      "resized nearest, as the runtime does")
    elif scores:
        chosen.update(labels="dense", labels_reason="the scores output is resized anyway; "
                      "its argmax gives the labels")
    chosen["resize"] = "pillow-bilinear (fixed point, one Gather per filter tap)"
    chosen["tables"] = "constants" if sizes.is_fixed else \
        f"computed from the image shape in {'float64' if target.float64 else 'float32'}"
    return chosen


def _normalise(emit: Emitter, model, planar: str, core_input: str, meta: ExportMetadata
               ) -> tuple[str, dict]:
    """Planar resized pixels in the model's colour order -> float32 NCHW model input
    (normalised unless the graph does it); folds what it can into the first convolution."""
    channels = meta.input_channels
    mean, scale = normalisation(meta) or (None, None)  # as the runtime: 1 / std in float32
    if scale is not None:
        mean = None if not mean.any() else mean
        scale = None if np.all(scale == 1) else scale
    fold = fold_input(model, core_input, 3 if meta.input_layout == "NHWC" else 1, mean, scale)
    x = emit.op("Cast", [planar], "pixels_float", to=TensorProto.FLOAT)
    shape = (1, channels, 1, 1)
    if "mean" in fold.explicit:
        x = emit.op("Sub", [x, emit.const(mean.reshape(shape), np.float32, "mean")],
                    "centred")
    if "scale" in fold.explicit:
        x = emit.op("Mul", [x, emit.const(scale.reshape(shape), np.float32, "inverse_std")],
                    "normalised")
    return x, fold.to_dict()


def _labels(emit: Emitter, model, meta: ExportMetadata, names: dict, size: tuple,
            sizes: ImageSizes, forms: dict, label_type: int, want_scores: bool, table_dtype,
            target: GraphTarget) -> tuple[str, str | None]:
    """The labels (and resized NHWC scores) at the image size from the core's outputs;
    ``forms`` says which labels form ran when the images need no resize."""
    outputs = {o.name: o for o in model.graph.output}
    scores_name = scores_output(meta)
    name = scores_name or meta.output_of_kind("labels")
    spec = meta.outputs[name]
    layout = spec.get("layout", meta.input_layout)
    dims = [d.dim_value for d in outputs[names[name]].type.tensor_type.shape.dim]
    coarse = (dims[2], dims[3]) if scores_name and layout == "NCHW" else (dims[1], dims[2])
    if not all(coarse):
        raise BadInputError(None, f"output '{name}' with a static height and width",
                            f"shape {dims}", "export the model with a fixed input size")
    value = names[name]
    uint8_compute = target.uint8_compute
    if scores_name is None:
        return nearest_labels(emit, value, coarse, size, label_type, uint8_compute), None
    classes = meta.num_classes
    axis = 1 if layout == "NCHW" else 3
    if sizes.is_fixed and tuple(sizes.minimum) == coarse:  # nothing to resize
        forms.update(labels="argmax", labels_reason="the images have the model's output size")
        labels = argmax(emit, value, axis, classes, forms["argmax"], label_type,
                        uint8_compute)
        if not want_scores:
            return labels, None
        return labels, value if layout == "NHWC" else emit.op(
            "Transpose", [value], "scores_nhwc", perm=[0, 2, 3, 1])
    if forms["labels"] == "boundary":
        if any(n.op_type == "DequantizeLinear" for n in model.graph.node):
            # the form reads the scores several times; ONNX Runtime would move a Q/DQ core's
            # last DequantizeLinear past the layout ops and give each reader its own full-size
            # copy. One float op it cannot remove or see through keeps it to one.
            value = emit.op("Max", [value, emit.const(-np.inf, np.float32)], "scores_float")
        if layout == "NCHW":
            value = emit.op("Transpose", [value], "scores_nhwc", perm=[0, 2, 3, 1])
        return boundary_labels(emit, value, coarse, size, sizes.maximum, classes,
                               forms["argmax"], label_type, table_dtype, uint8_compute,
                               target.nonzero_bool), None
    resize_layout = target.resize_layout or layout
    return dense_labels(emit, value, layout, size, classes, forms["argmax"], label_type,
                        want_scores, resize_layout, uint8_compute)


def _label_type(num_classes: int, target: GraphTarget) -> int:
    if num_classes <= 256:
        return TensorProto.UINT8
    return TensorProto.UINT16 if target.uint16 else TensorProto.INT32


def _free_public_names(model, meta: ExportMetadata) -> dict[str, str]:
    """Rename the core's tensors that carry the end-to-end graph's public names; returns
    the core's input and output names -> their names now."""
    names = {meta.input_name: meta.input_name, **{n: n for n in meta.outputs}}
    emit = Emitter(model, "core/")
    for public in (INPUT, LABELS, SCORES):
        if emit.is_used(public):
            new = emit.name(public)
            rename_tensor(model.graph, public, new)
            names = {k: new if v == public else v for k, v in names.items()}
    return names


def _dim(dim) -> int | str:
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "batch")


def record_parity(model: onnx.ModelProto | None, meta: ExportMetadata, report: dict
                  ) -> ExportMetadata:
    """Store a parity report (``end_to_end_parity``) in an end-to-end graph's metadata
    (``end_to_end.parity``), written into ``model`` unless it is None (a build writes it
    into the built artifact or its sidecar); returns the new metadata."""
    meta = replace(meta, end_to_end={**meta.end_to_end, "parity": report})
    if model is not None:
        write_metadata(model, meta)
    return meta
