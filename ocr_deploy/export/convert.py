"""Convert a loaded Keras model to ONNX with tf2onnx, then clean the graph up.

The model is wrapped in one ``tf.function`` that optionally normalises the input and adds
an argmax, and returns named outputs; tf2onnx traces that function. The result has the
stable interface ``image`` in, ``logits`` (``probabilities`` when the model ends in a
softmax) / ``labels`` / ``aux_logits`` out, with a dynamic ``batch`` dimension.

``convert_checked`` also runs the converted model once in ONNX Runtime: tf2onnx
mis-converts some reshapes when the batch is dynamic (the ONNX then fails in ONNX Runtime
or in shape inference), so on such a defect it converts again with a fixed batch of 1, and
only if that fails too does it raise a ``ConversionError`` naming the failing node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.errors import BadInputError, ConversionError
from ocr_deploy.export.loader import LoadedModel
from ocr_deploy.export.outputs import OutputChoice
from ocr_deploy.onnxruntime_env import mute_onnxruntime_logger
from ocr_deploy.tf_env import (
    describe_error,
    import_tensorflow,
    native_stderr_captured,
)

DEFAULT_OPSET = 17
MAX_OPSET = 18  # tf2onnx 1.17 refuses higher


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
    batch: int | None = None  # None: dynamic; else fixed (see convert_checked)
    main_output: str = "logits"  # "probabilities" when the model ends in a softmax
    debug: bool = False  # show the converter's own log output


SOFTMAX_PASSTHROUGH = ("Identity", "IdentityN", "Cast")  # ops between a softmax and an output


def export_function(loaded: LoadedModel, choice: OutputChoice, options: ConvertOptions):
    """The ``tf.function`` that is both converted and used as the parity reference.

    It takes NHWC float32 images and returns a dict of the exported outputs, each NHWC.
    With ``normalize_in_graph`` the images are raw pixel values (0..255).
    """
    tf = import_tensorflow()
    height, width = options.input_hw
    spec = tf.TensorSpec((options.batch, height, width, options.channels), tf.float32,
                         name=INPUT_NAME)
    inv_std = [1.0 / s for s in options.std]

    @tf.function(input_signature=[spec])
    def exported(image):
        x = image
        if options.normalize_in_graph:  # constants made here, or tf2onnx sees graph inputs
            x = (image - tf.constant(options.mean, tf.float32)) * tf.constant(inv_std, tf.float32)
        outputs = loaded.call(x)
        logits = outputs[choice.logits]
        # decided while tracing (the first call): a softmax output holds probabilities
        options.main_output = "probabilities" if ends_in_softmax(logits) else "logits"
        result = {}
        if options.logits:
            result[options.main_output] = tf.identity(logits)
        if options.argmax:
            result["labels"] = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        if options.keep_aux:
            for index, name in enumerate(choice.aux):
                result["aux_logits" if index == 0 else f"aux_logits_{index}"] = \
                    tf.identity(outputs[name])
        return result

    exported.get_concrete_function()  # trace now, so options.main_output is known
    return exported


def ends_in_softmax(tensor) -> bool:
    """True when a traced tensor is a softmax over its last axis (through identities)."""
    op = getattr(tensor, "op", None)
    while op is not None and op.type in SOFTMAX_PASSTHROUGH and op.inputs:
        op = op.inputs[0].op
    return op is not None and op.type == "Softmax"


@dataclass
class Conversion:
    """The converted model, the function it was traced from, and how it was made."""

    function: object
    model: object
    batch: str  # "dynamic" or "fixed 1"
    retry_reason: str | None = None  # why the batch is fixed although the model's is not


def convert_checked(loaded: LoadedModel, choice: OutputChoice,
                    options: ConvertOptions) -> Conversion:
    """Convert with a dynamic batch and run the result once in ONNX Runtime; on a converter
    defect retry with a fixed batch of 1; raise ``ConversionError`` if that fails too.

    The model itself is run once in TensorFlow first: a model that fails there (an input
    size it cannot take) is a ``BadInputError``, and one that only takes a batch of 1 (a
    batch written into its reshapes, or a fixed-batch input) is exported with that batch.
    """
    options.batch = options.batch or loaded.batch
    function = _traced(loaded, choice, options)
    if options.batch is None and _tf_failure(function, options, 2):
        options.batch = 1
        function = _traced(loaded, choice, options)
        return _convert_fixed(loaded, choice, options, function,
                              "the model fails in TensorFlow with a batch of 2")
    if options.batch is not None:
        return _convert_fixed(loaded, choice, options, function,
                              f"the model's input has a fixed batch of {options.batch}")
    try:
        model = convert(function, options)
        problem = run_check(model, options)
    except ConversionError as exc:
        model, problem = None, exc.found
    if problem is None:
        return Conversion(function, model, "dynamic")
    options.batch = 1
    return _convert_fixed(loaded, choice, options, _traced(loaded, choice, options),
                          f"tf2onnx's output fails with a dynamic batch: {problem}")


def _convert_fixed(loaded: LoadedModel, choice: OutputChoice, options: ConvertOptions,
                   function, problem: str | None) -> Conversion:
    """Convert with ``options.batch`` fixed; ``problem``: why the batch is not dynamic."""
    failure = _tf_failure(function, options, options.batch)
    if failure:
        raise BadInputError(loaded.file.path, f"a model that runs in TensorFlow on a "
                            f"{options.batch}x{options.input_hw[0]}x{options.input_hw[1]}x"
                            f"{options.channels} input", failure,
                            "check --input-size (the model may need a multiple of its stride)")
    try:
        model = convert(function, options)
    except ConversionError as exc:
        raise ConversionError(exc.path, exc.expected, f"{exc.found} (with a fixed batch of "
                              f"{options.batch}, because {problem})"[:600], exc.action) from exc
    fixed_problem = run_check(model, options)
    if fixed_problem is not None:
        found = f"tf2onnx's output fails with a fixed batch of {options.batch} ({fixed_problem})"
        if problem:
            found += f"; before: {problem}"
        raise ConversionError(None, "an ONNX model that ONNX Runtime runs", found[:600],
                              "a converter defect at the node named: report it with the "
                              "model, or try another --opset")
    return Conversion(function, model, f"fixed {options.batch}", problem)


def _traced(loaded: LoadedModel, choice: OutputChoice, options: ConvertOptions):
    """``export_function``, with a model that TensorFlow cannot trace as a bad input."""
    try:
        return export_function(loaded, choice, options)
    except Exception as exc:
        raise BadInputError(loaded.file.path, f"a model TensorFlow can trace at "
                            f"{options.input_hw[0]}x{options.input_hw[1]}",
                            _first_line(exc)[:300],
                            "check --input-size (the model may need a multiple of its "
                            "stride) and that the model runs in Keras") from exc


def _tf_failure(function, options: ConvertOptions, batch: int) -> str | None:
    """Run the export function in TensorFlow on ``batch`` random images; the error or None."""
    height, width = options.input_hw
    images = np.random.default_rng(0).uniform(
        -1, 1, (batch, height, width, options.channels)).astype(np.float32)
    try:
        function(images)
    except Exception as exc:
        return _first_line(exc)[:300]
    return None


def run_check(model, options: ConvertOptions) -> str | None:
    """Run ``model`` once in ONNX Runtime on random input; the error's first line, or None.

    A dynamic batch is checked with 2 images (a batch of 1 hides reshape defects).
    """
    from ocr_deploy.verification.reference import reference_runner

    mute_onnxruntime_logger()
    height, width = options.input_hw
    batch = options.batch or 2
    shape = (batch, options.channels, height, width) if options.nchw else \
        (batch, height, width, options.channels)
    feed = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        runner = reference_runner(model.SerializeToString(), "the converted model")
    except Exception as exc:  # ONNX Runtime's own error, not the runner's wording of it
        return _first_line(exc.__cause__ or exc)
    try:
        runner.session.run(None, {runner.input_name: feed})  # unpadded: a batch of 2
    except Exception as exc:
        return _first_line(exc)
    return None


def _first_line(exc: Exception) -> str:
    return describe_error(exc, 400)


def convert(function, options: ConvertOptions):
    """Trace ``function`` with tf2onnx, then fold constants, slim and check the graph."""
    import onnx
    import tf2onnx

    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    mute_onnxruntime_logger()
    outputs = function.get_concrete_function().structured_outputs
    layout_outputs = [n for n in outputs if n != "labels"] \
        if options.nchw else None
    with native_stderr_captured(show=options.debug):
        try:
            model, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=options.opset,
                inputs_as_nchw=[INPUT_NAME] if options.nchw else None,
                outputs_as_nchw=layout_outputs)
        except Exception as exc:
            raise ConversionError(None, "tf2onnx to convert the model", _first_line(exc)[:300],
                                  "report this with the model; try another --opset") from exc
        keep_outputs(model, list(outputs))
        freeze_captured_inputs(model, function)
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


def freeze_captured_inputs(model, function) -> None:
    """Turn graph inputs other than ``image`` into constants (in place).

    tf2onnx freezes captured variables but leaves captured *tensors* as graph inputs: a
    tf_keras ``TFOpLambda`` such as ``0.2 * scores`` reloads with its constant as an eager
    tensor captured by the traced function. Its value is known, so it becomes an initializer.
    """
    from onnx import numpy_helper

    extra = [i for i in model.graph.input if i.name != INPUT_NAME]
    if not extra:
        return
    captured = {internal.name: external for external, internal in
                function.get_concrete_function().graph.captures
                if hasattr(external, "numpy") and external.dtype.name != "resource"}
    for value in extra:
        if value.name not in captured:
            raise ConversionError(None, f"one graph input ('{INPUT_NAME}')",
                                  f"another input '{value.name}' that tf2onnx left unresolved",
                                  "report this with the model")
        model.graph.initializer.append(
            numpy_helper.from_array(captured[value.name].numpy(), value.name))
        model.graph.input.remove(value)


def keep_outputs(model, names: list[str]) -> None:
    """Keep only the graph outputs the export function returns (in place)."""
    kept = [o for o in model.graph.output if o.name in names]
    if len(kept) == len(names):
        del model.graph.output[:]
        model.graph.output.extend(kept)


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
    """tf2onnx names the dynamic batch ``unk__NNN``; call it ``batch`` everywhere.

    Values with no recorded shape (or rank 0) are left alone.
    """
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
