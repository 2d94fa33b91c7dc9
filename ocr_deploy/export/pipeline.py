"""The export pipeline: load -> choose outputs -> convert -> verify parity -> write.

``export_model`` is the Python API behind ``ocr-export``. Outputs are written atomically:
on success ``OUT.onnx`` and ``OUT.parity.json``; when parity fails, the model goes to
``OUT.parity-failed.onnx`` (with ``OUT.parity-failed.json``) and a good ``OUT.onnx`` is
never touched. The report records the ONNX's SHA-256 and the two are written as one pair
(``ocr_deploy.pairs``): a reader never sees a new ONNX beside an old report.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ocr_deploy
from ocr_deploy.backends import NAMES
from ocr_deploy.backends.options import option
from ocr_deploy.cli_support import floats_arg, positive_int, size_arg
from ocr_deploy.contract.metadata import ExportMetadata, write_metadata
from ocr_deploy.errors import BadInputError, ConversionError, ParityError
from ocr_deploy.export.convert import (
    DEFAULT_OPSET,
    MAX_OPSET,
    ConvertOptions,
    convert_checked,
    drop_outputs,
    run_check,
)
from ocr_deploy.export.input_range import HOW_TO_SET, InputRange, parity_input_range
from ocr_deploy.export.loader import LoadedModel, load_custom_objects, load_model
from ocr_deploy.export.outputs import OutputChoice, choose_outputs
from ocr_deploy.files import check_writable_output, sha256_of
from ocr_deploy.graph.attention import FORMS, apply_attention_form, summary
from ocr_deploy.graph.index import opset_of
from ocr_deploy.images import list_images, read_image, resize_bilinear
from ocr_deploy.memory_budget import MemoryBudget
from ocr_deploy.model_card import ModelCard
from ocr_deploy.pairs import pair_output
from ocr_deploy.precision.shapes import forward_bytes, static_shapes
from ocr_deploy.progress import Progress
from ocr_deploy.verification.comparison import (
    DEFAULT_ATOL,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_RTOL,
    Comparison,
    ComparisonReport,
)
from ocr_deploy.verification.reference import reference_runner

PARITY_BATCH = 2
STAGES = 6


LOADING, GRAPH, PARITY = "loading", "graph", "parity check"  # help sections (``group``)


@dataclass
class ExportRequest:
    """Everything ``ocr-export`` can be asked to do; the fields declared with ``option``
    are the CLI's flags (``backends.options``), the others the CLI sets by hand."""

    model: Path
    output: Path | None = option(  # default: export/<model name>.onnx
        None, "--output", short="-o", parse=Path,
        help="output .onnx (default: export/<model name>.onnx)")
    force: bool = False
    custom_objects: Path | None = option(
        None, "--custom-objects", parse=Path, metavar="FILE.py|MODULE", group=LOADING,
        help="Python file defining or importing the model's custom layers, or an importable "
             "module name (e.g. keras_hub, mylib.layers); every class and function in its "
             "namespace is used (default: none)")
    trust_model: bool = option(
        False, "--trust-model", action="store_true", group=LOADING,
        help="allow Lambda layers: loading them RUNS CODE stored in the file")
    output_name: str | None = option(  # the Keras output to export as logits
        None, "--output-name", metavar="NAME", group=GRAPH,
        help="Keras output to export as logits (default: found automatically)")
    keep_aux: bool = option(
        False, "--keep-aux", action="store_true", group=GRAPH,
        help="also export the auxiliary soft-region output as aux_logits")
    argmax: bool = option(
        False, "--argmax", action="store_true", group=GRAPH,
        help="add an int32 'labels' output (per-pixel argmax) in the graph")
    labels_only: bool = option(False, "--labels-only", action="store_true", group=GRAPH,
                               help="export only 'labels' (implies --argmax)")
    nchw: bool = option(False, "--nchw", action="store_true", group=GRAPH,
                        help="NCHW input (and logits) layout instead of NHWC")
    opset: int = option(DEFAULT_OPSET, "--opset", parse=int, group=GRAPH,
                        help=f"ONNX opset (tf2onnx supports up to {MAX_OPSET})")
    attention: str = option(  # see ocr_deploy.graph
        "auto", "--attention", choices=FORMS, group=GRAPH,
        help="attention-core form: decomposed (MatMul-Softmax-MatMul, scale on Q, fusable "
             "by TensorRT), attention (ONNX Attention op, opset 23, TensorRT >= 10.14), keep "
             "(as converted), auto (measured best for --attention-target; rewrites the cores "
             "it understands, leaves the rest and never fails the export)")
    attention_target: str = option(  # the backend `auto` chooses the form for
        "onnxruntime", "--attention-target", choices=NAMES, group=GRAPH,
        help="backend that --attention auto chooses for")
    input_size: tuple[int, int] | None = option(  # needed when the model's H, W are dynamic
        None, "--input-size", parse=size_arg, metavar="HxW", group=GRAPH,
        help="input size, required when the model's is dynamic (default: the model's own)")
    card: Path | None = option(  # default: MODEL.card.json beside the model, if present
        None, "--card", parse=Path, group=LOADING,
        help="model card JSON (default: MODEL.card.json beside the model)")
    normalize_in_graph: bool = option(
        False, "--normalize-in-graph", action="store_true", group=GRAPH,
        help="put (pixel - mean) / std in the graph: the ONNX takes 0..255 pixels")
    mean: list[float] | None = option(  # overrides the card
        None, "--mean", parse=floats_arg, metavar="R,G,B", group=GRAPH,
        help="normalisation mean in pixel units (default: from the card, else 0); also sets "
             "the parity inputs' range (default there: the model's own Rescaling/"
             "Normalization layers, else ImageNet's mean/std)")
    std: list[float] | None = option(
        None, "--std", parse=floats_arg, metavar="R,G,B", group=GRAPH,
        help="normalisation std in pixel units (default: from the card, else 1)")
    samples_dir: Path | None = option(
        None, "--samples", parse=Path, metavar="DIR", group=PARITY,
        help="also compare on these images (png/jpg, resized to the input; default: none)")
    random_samples: int = option(4, "--parity-samples", parse=positive_int, metavar="N",
                                 group=PARITY, help="seeded random images to compare on")
    seed: int = option(0, "--seed", parse=int, group=PARITY,
                       help="seed of the random parity images")
    atol: float = option(DEFAULT_ATOL, "--atol", parse=float, group=PARITY,
                         help="absolute tolerance of the scores")
    rtol: float = option(DEFAULT_RTOL, "--rtol", parse=float, group=PARITY,
                         help="relative to the logit scale (max |reference|)")
    min_agreement: float = option(
        DEFAULT_MIN_AGREEMENT, "--min-agreement", parse=float, group=PARITY,
        help="minimum fraction of pixels with equal labels, ties aside")
    quiet: bool = False
    debug: bool = False  # show the converter's own log output
    memory_budget: MemoryBudget | None = None  # None: memory_budget's default, read at start


@dataclass
class ExportResult:
    """What was written and how well it matched."""

    onnx_path: Path
    report_path: Path
    parity: ComparisonReport
    choice: OutputChoice
    metadata: ExportMetadata
    timings: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)  # the budget and the parity batch it allowed

    def to_dict(self) -> dict:
        return {"onnx": str(self.onnx_path), "report": str(self.report_path),
                "passed": self.parity.passed, "attention": self.metadata.attention,
                "logits_output": self.choice.logits, "aux_outputs": self.choice.aux,
                "choice_reason": self.choice.reason, "parity": self.parity.to_dict(),
                "memory": self.memory,
                "metadata": self.metadata.__dict__, "timings_s": self.timings}


def default_output(model: Path) -> Path:
    """``export/<model name>.onnx`` in the current directory."""
    model = Path(model)
    stem = model.name if model.is_dir() else model.stem
    return Path("export") / f"{stem}.onnx"


def failed_output(output: Path) -> Path:
    """Where a model that failed parity is kept: ``NAME.parity-failed.onnx``."""
    return output.with_name(f"{output.stem}.parity-failed.onnx")


def report_path_for(onnx_path: Path) -> Path:
    """``NAME.parity.json`` for ``NAME.onnx``; ``NAME.parity-failed.json`` for a failed one."""
    stem = onnx_path.stem
    return onnx_path.with_name(f"{stem}.json" if stem.endswith(".parity-failed")
                               else f"{stem}.parity.json")


def export_model(request: ExportRequest) -> ExportResult:
    """Run the whole export; raises an ``OcrDeployError`` subclass on any failure."""
    start = time.perf_counter()
    output = Path(request.output) if request.output else default_output(request.model)
    _validate(request, output)
    progress = Progress(STAGES, request.quiet)

    with progress.stage("loading the model"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # shown below as one line each
        custom = load_custom_objects(request.custom_objects, request.model) \
            if request.custom_objects else None
        loaded = load_model(request.model, custom, request.trust_model,
                            request.custom_objects)
        progress.note(f"{request.model}: {loaded.file.format} file, loaded with "
                      f"{loaded.keras_version}")
        for message in dict.fromkeys(" ".join(str(w.message).split()) for w in caught
                                     if issubclass(w.category, UserWarning)):
            progress.note(f"Keras: {message[:300]}")
    input_hw = _input_size(request, loaded)
    card = _card(request, loaded)
    with progress.stage("choosing outputs"):
        choice = choose_outputs(request.model, input_hw, loaded.output_shapes_at(input_hw),
                                request.output_name)
        progress.note(f"logits: '{choice.logits}' ({choice.reason}); "
                      f"{'kept' if request.keep_aux else 'dropped'} auxiliary: "
                      f"{', '.join(choice.aux) or 'none'}")
    if card.class_names and len(card.class_names) != choice.num_classes:
        raise BadInputError(request.card or ModelCard.path_for(request.model),
                            f"{choice.num_classes} class names (the model's classes)",
                            f"{len(card.class_names)}", "fix the model card")
    options = ConvertOptions(
        input_hw=input_hw, opset=request.opset, nchw=request.nchw,
        argmax=request.argmax or request.labels_only,
        keep_aux=request.keep_aux, normalize_in_graph=request.normalize_in_graph,
        mean=card.mean, std=card.std, channels=loaded.input_shape[2] or 3,
        debug=request.debug)
    if loaded.dtype_policy:
        progress.note(f"the model was saved with the {loaded.dtype_policy} policy: exported "
                      "in float32 (reduced precision is ocr-build-engine's job)")
    with progress.stage("converting with tf2onnx"):
        progress.note(f"opset {request.opset}")
        conversion = convert_checked(loaded, choice, options)
        function, model = conversion.function, conversion.model
        if conversion.retry_reason:
            progress.warn(f"exported with a fixed batch of {options.batch} (recorded in "
                          f"the metadata): {conversion.retry_reason[:300]}")
        if options.main_output != "logits":
            progress.note(f"'{choice.logits}' ends in a softmax: exported and judged as "
                          f"'{options.main_output}'")
    with progress.stage("rewriting the attention core"):
        model, attention = _attention(model, request, options)
        progress.note(summary(attention))
    with progress.stage("verifying parity (TensorFlow vs ONNX Runtime)"):
        images = _parity_images(request, input_hw, options.channels)
        input_range = _input_range(request, card, loaded, options)
        progress.note(f"parity inputs: {input_range.describe()}")
        budget = request.memory_budget or MemoryBudget.default()
        batch = options.batch or parity_batch(model, budget)
        progress.note(f"memory budget {budget.describe()}: parity in batches of {batch}")
        parity = _verify(function, model, images, options, input_range, request, batch)
        progress.note(f"{len(images)} images: " + "; ".join(
            f"{o.name}: max abs {o.max_abs_err:.2e}, labels {100 * o.label_agreement:.3f}%"
            if o.kind != "labels" else f"{o.name}: {100 * o.label_agreement:.3f}% equal"
            for o in parity.outputs))
    if request.labels_only:  # verified with logits (ties need them), shipped without
        model = drop_outputs(model, [options.main_output])
        options.logits = False
    metadata = _metadata(request, loaded, choice, options, card, parity, attention,
                         conversion, input_range)
    write_metadata(model, metadata)
    onnx_path = output if parity.passed else failed_output(output)
    result = ExportResult(onnx_path, report_path_for(onnx_path), parity, choice, metadata,
                          memory={"budget": budget.to_dict(), "parity_batch": batch})
    with progress.stage("writing the ONNX"):  # with its report, as one pair (ocr_deploy.pairs)
        with pair_output(onnx_path, result.report_path,
                         force=request.force or not parity.passed) as write:
            write.artifact_tmp.write_bytes(model.SerializeToString())
            result.timings = {**progress.timings,
                              "total": round(time.perf_counter() - start, 3)}
            write.companion = result.to_dict()
        progress.note(str(onnx_path))
    if not parity.passed:
        failing = next(o for o in parity.outputs if not o.passed)
        raise ParityError(onnx_path, f"parity within atol={request.atol:g}, "
                          f"rtol={request.rtol:g}", f"{failing.name}: {failing.reason}",
                          f"the model was kept under this name for inspection; see "
                          f"{result.report_path}; parity inputs were "
                          f"{input_range.describe()}: if the model expects another range, "
                          f"{HOW_TO_SET}")
    return result


def _validate(request: ExportRequest, output: Path) -> None:
    if output.suffix != ".onnx":
        raise BadInputError(output, "an output path ending in .onnx", f"'{output.suffix}'",
                            "name the output NAME.onnx")
    if not 7 <= request.opset <= MAX_OPSET:
        raise BadInputError(None, f"--opset between 7 and {MAX_OPSET} (tf2onnx's limit)",
                            str(request.opset), f"use the default {DEFAULT_OPSET}")
    if request.random_samples < 0 or (request.random_samples == 0 and not request.samples_dir):
        raise BadInputError(None, "at least one parity sample", "none",
                            "give --parity-samples N > 0 or --samples DIR")
    check_writable_output(output, request.force)
    check_writable_output(report_path_for(output), request.force)


def _attention(model, request: ExportRequest, options: ConvertOptions):
    """The attention rewrite, checked in ONNX Runtime: under ``auto`` a rewrite that does
    not run is dropped (and the reason recorded); an explicit form that does not is exit 4."""
    rewritten, info = apply_attention_form(model, request.attention, request.attention_target,
                                           source=request.model)
    if rewritten is model:
        return model, info
    problem = run_check(rewritten, options)
    if problem is None:
        return rewritten, info
    if request.attention != "auto":
        raise ConversionError(request.model, f"a model ONNX Runtime runs after the "
                              f"'{info['form']}' attention rewrite", problem,
                              "use --attention auto or keep, and report the model")
    info.update(form="keep", reason=f"the '{info['form']}' rewrite does not run in ONNX "
                f"Runtime ({problem}); the graph is left as exported",
                opset=opset_of(model))
    return model, info


def _input_size(request: ExportRequest, loaded: LoadedModel) -> tuple[int, int]:
    if len(loaded.input_shape) != 3:
        raise BadInputError(request.model, "an image input [batch, height, width, channels]",
                            f"an input of shape {[None, *loaded.input_shape]}",
                            "export an image segmentation model")
    height, width, channels = loaded.input_shape
    if channels not in (None, 1, 3):
        raise BadInputError(request.model, "an image input with 1 or 3 channels",
                            f"{channels} channels", "export an image segmentation model")
    if request.input_size:
        if (height, width) != (None, None) and (height, width) != tuple(request.input_size):
            raise BadInputError(request.model, f"--input-size matching the model's "
                                f"{height}x{width}", "x".join(map(str, request.input_size)),
                                "drop --input-size")
        return tuple(request.input_size)
    if height is None or width is None:
        raise BadInputError(request.model, "a fixed input height and width",
                            f"a dynamic input shape ({height}x{width})",
                            "pass --input-size HxW")
    return int(height), int(width)


def _card(request: ExportRequest, loaded: LoadedModel) -> ModelCard:
    path = request.card or ModelCard.path_for(request.model)
    card = ModelCard.load(path) if request.card or path.is_file() else ModelCard()
    if request.mean is not None:
        card.mean = list(request.mean)
    if request.std is not None:
        card.std = list(request.std)
    return card


def _input_range(request: ExportRequest, card: ModelCard, loaded: LoadedModel,
                 options: ConvertOptions) -> InputRange:
    if options.normalize_in_graph:  # the graph normalises: it takes pixels
        return InputRange([0.0] * options.channels, [1.0] * options.channels,
                          "the normalisation in the graph (--normalize-in-graph)")
    path = request.card or ModelCard.path_for(request.model)
    explicit = request.mean is not None or request.std is not None or bool(request.card) \
        or path.is_file()
    return parity_input_range(card.mean, card.std, explicit, loaded.model, options.channels)


def _parity_images(request: ExportRequest, input_hw, channels: int) -> np.ndarray:
    rng = np.random.default_rng(request.seed)
    height, width = input_hw
    images = [rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
              for _ in range(request.random_samples)]
    if request.samples_dir:
        files = list_images(request.samples_dir)
        if not files:
            raise BadInputError(request.samples_dir, "png/jpg images", "none",
                                "put sample images in the folder")
        for path in files:
            image = resize_bilinear(read_image(path), height, width)
            images.append(image[..., :1] if channels == 1 else image)
    return np.stack(images)


def parity_batch(model, budget: MemoryBudget) -> int:
    """Parity images run at once within ``budget``: each holds its input, TensorFlow's
    forward pass (counted as twice ONNX Runtime's: eager kernels keep more alive), ONNX
    Runtime's (``precision.shapes.forward_bytes``) and both sides' outputs."""
    shapes = static_shapes(model)
    outputs = sum(math.prod(shapes.get(o.name, [0])) * 4 for o in model.graph.output)
    inputs = math.prod(shapes.get(model.graph.input[0].name, [0])) * 4
    return budget.batch_size(inputs + 3 * forward_bytes(model) + 2 * outputs,
                             largest=PARITY_BATCH, input_bytes=inputs)


def _verify(function, model, images: np.ndarray, options: ConvertOptions,
            input_range: InputRange, request: ExportRequest, step: int) -> ComparisonReport:
    runner = reference_runner(model.SerializeToString(), "the exported model")
    comparison = None
    for begin in range(0, len(images), step):
        batch = input_range.apply(images[begin:begin + step])
        count = len(batch)
        if options.batch and count < step:  # a fixed batch: fill it up, keep what was asked
            batch = np.concatenate([batch, np.repeat(batch[-1:], step - count, axis=0)])
        reference = {name: value.numpy()[:count] for name, value in function(batch).items()}
        onnx_in = batch.transpose(0, 3, 1, 2) if options.nchw else batch
        candidate = {}
        given = np.ascontiguousarray(onnx_in, runner.input_dtype)
        for name, value in runner.run(given, runner.output_names).items():
            if options.nchw and value.ndim == 4:
                value = value.transpose(0, 2, 3, 1)
            candidate[name] = value[:count]
        if comparison is None:
            kinds = {name: ("labels" if name == "labels" else
                            "aux_logits" if name.startswith("aux") else options.main_output)
                     for name in reference}
            comparison = Comparison(kinds, request.atol, request.rtol, request.min_agreement)
        comparison.add(reference, candidate)
    return comparison.report()


def _metadata(request, loaded: LoadedModel, choice: OutputChoice, options: ConvertOptions,
              card: ModelCard, parity: ComparisonReport, attention: dict, conversion,
              input_range: InputRange) -> ExportMetadata:
    import onnx
    import onnxruntime
    import onnxslim
    import tf2onnx

    from ocr_deploy.tf_env import import_tensorflow

    layout = "NCHW" if options.nchw else "NHWC"
    outputs = {}
    if options.logits:
        outputs[options.main_output] = {"kind": options.main_output, "layout": layout,
                                        "stride": choice.stride}
    if options.argmax:
        outputs["labels"] = {"kind": "labels", "layout": "NHW", "stride": choice.stride}
    if options.keep_aux:
        outputs.update({("aux_logits" if i == 0 else f"aux_logits_{i}"):
                        {"kind": "aux_logits", "layout": layout} for i in range(len(choice.aux))})
    return ExportMetadata(
        input_layout=layout, input_height=options.input_hw[0], input_width=options.input_hw[1],
        input_channels=options.channels, color_order=card.color_order,
        normalization={"mean": card.mean, "std": card.std,
                       "in_graph": options.normalize_in_graph},
        num_classes=choice.num_classes,
        class_names=card.class_names or [f"class_{i}" for i in range(choice.num_classes)],
        palette=card.palette, outputs=outputs,
        source={"file": Path(request.model).name, "sha256": sha256_of(request.model),
                "format": loaded.file.format, "loaded_with": loaded.keras_version,
                "written_by_keras": loaded.file.keras_version,
                "keras_output": choice.logits, "dtype_policy": loaded.dtype_policy},
        tools={"ocr_deploy": ocr_deploy.__version__,
               "tensorflow": import_tensorflow().__version__, "tf2onnx": tf2onnx.__version__,
               "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
               "onnxslim": onnxslim.__version__, "opset": attention["opset"],
               "batch": conversion.batch, "fixed_batch_because": conversion.retry_reason},
        parity={**parity.summary(), "inputs": input_range.to_dict()}, attention=attention,
        notes=card.notes)
