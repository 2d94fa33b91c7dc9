"""Convert a loaded Keras model to ONNX with tf2onnx, then clean the graph up.

The model is wrapped in one ``tf.function`` that optionally normalises the input and adds
an argmax, and returns named outputs; tf2onnx traces that function. The result has the
stable interface ``image`` in, ``logits`` / ``labels`` / ``aux_logits`` out, with a
dynamic ``batch`` dimension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ocr_deploy.errors import ConversionError
from ocr_deploy.export.loader import LoadedModel
from ocr_deploy.export.outputs import OutputChoice
from ocr_deploy.tf_env import import_tensorflow

DEFAULT_OPSET = 17
MAX_OPSET = 18  # tf2onnx 1.17 refuses higher
INPUT_NAME = "image"


@dataclass
class ConvertOptions:
    """What the exported graph looks like."""

    input_hw: tuple[int, int]
    opset: int = DEFAULT_OPSET
    nchw: bool = False
    argmax: bool = False  # add an int32 `labels` output
    logits: bool = True  # the `logits` output is kept (False once dropped after parity)
    keep_aux: bool = False
    normalize_in_graph: bool = False
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    channels: int = 3


def export_function(loaded: LoadedModel, choice: OutputChoice, options: ConvertOptions):
    """The ``tf.function`` that is both converted and used as the parity reference.

    It takes NHWC float32 images and returns a dict of the exported outputs, each NHWC.
    With ``normalize_in_graph`` the images are raw pixel values (0..255).
    """
    tf = import_tensorflow()
    height, width = options.input_hw
    spec = tf.TensorSpec((None, height, width, options.channels), tf.float32, name=INPUT_NAME)
    inv_std = [1.0 / s for s in options.std]

    @tf.function(input_signature=[spec])
    def exported(image):
        x = image
        if options.normalize_in_graph:  # constants made here, or tf2onnx sees graph inputs
            x = (image - tf.constant(options.mean, tf.float32)) * tf.constant(inv_std, tf.float32)
        outputs = loaded.call(x)
        logits = outputs[choice.logits]
        result = {}
        if options.logits:
            result["logits"] = tf.identity(logits)
        if options.argmax:
            result["labels"] = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        if options.keep_aux:
            for index, name in enumerate(choice.aux):
                result["aux_logits" if index == 0 else f"aux_logits_{index}"] = \
                    tf.identity(outputs[name])
        return result

    return exported


def convert(function, options: ConvertOptions):
    """Trace ``function`` with tf2onnx, then fold constants, slim and check the graph."""
    import onnx
    import tf2onnx

    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    outputs = function.get_concrete_function().structured_outputs
    layout_outputs = [n for n in outputs if n != "labels"] \
        if options.nchw else None
    try:
        model, _ = tf2onnx.convert.from_function(
            function, input_signature=function.input_signature, opset=options.opset,
            inputs_as_nchw=[INPUT_NAME] if options.nchw else None,
            outputs_as_nchw=layout_outputs)
    except Exception as exc:
        raise ConversionError(None, "tf2onnx to convert the model",
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                              "report this with the model; try another --opset") from exc
    model = clean_up(model)
    _name_batch_dimension(model)
    canonicalize_names(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ConversionError(None, "a valid ONNX graph", f"onnx.checker: {exc}"[:300],
                              "report this with the model") from exc
    return model


def clean_up(model):
    """Constant folding, dead-node removal and slimming with onnxslim (names kept)."""
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as exc:
        raise ConversionError(None, "onnxslim to clean up the graph",
                              f"{type(exc).__name__}: {exc}"[:300],
                              "report this with the model") from exc


def drop_outputs(model, names: list[str]):
    """Remove graph outputs and whatever only they needed."""
    kept = [o for o in model.graph.output if o.name not in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return clean_up(model)


COUNTER = re.compile(r"__(\d+)")  # tf2onnx's generated-name counter: Conv__151, unk__88


def canonicalize_names(model) -> None:
    """Renumber tf2onnx's counter suffixes in graph order, consistently in every name.

    Its counter is process-global, so without this the same Keras model exported twice in
    one process gives different bytes, and everything keyed on them (the calibration cache)
    misses. The renumbering is injective, so distinct names stay distinct.
    """
    graph = model.graph
    tables: dict[str, dict[str, str]] = {"name": {}, "dim": {}}

    def renamed(name: str, kind: str = "name") -> str:
        numbers = tables[kind]
        return COUNTER.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers))),
                           name)

    for node in graph.node:
        node.name = renamed(node.name)
        node.input[:] = [renamed(n) for n in node.input]
        node.output[:] = [renamed(n) for n in node.output]
    for init in graph.initializer:
        init.name = renamed(init.name)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = renamed(value.name)
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = renamed(dim.dim_param, "dim")


def _name_batch_dimension(model) -> None:
    """tf2onnx names the dynamic batch ``unk__NNN``; call it ``batch`` everywhere."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"
