"""The registry of tiny hand-built ONNX artifacts shaped like ocr-export's output, for the
layers that have nothing to do with TensorFlow (runtime, ocr-predict, ocr-bench, ocr-package,
ocr-serve, pairs, the C ABI, metadata checks, builds).

Each variant is a small convolutional net built with ``onnx.helper`` (random weights, fixed
seed) that carries the metadata an export writes (``ocr_deploy.contract.metadata``): input contract,
normalisation, class names and palette from a model card, outputs with kinds, layouts and
strides, and the source, tools, parity and attention sections. Its parity section compares
ONNX Runtime with a NumPy reference of the same net, as ocr-export compares it with
TensorFlow; ``build`` refuses a variant that fails ``ocr_deploy.contract.signature.check_onnx``.
``conftest.py`` gives each one a session fixture (``nhwc_onnx``, ``nchw_onnx``, ...).

``exported`` makes the real thing for the first two, through ocr-export and TensorFlow,
for the tests where the exporter's output is the point; ``tests/test_artifacts.py`` checks
that the hand-built ones keep the shape of those.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.model_card import ModelCard

CLASS_NAMES = ["background", "disc", "square", "ring"]
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200]]
MEAN, STD = [127.5, 120.0, 110.0], [127.5, 60.0, 70.0]
HIDDEN = 16  # channels between the two convolutions
OPSET = 17
PARITY_SAMPLES = 2


@dataclass(frozen=True)
class Variant:
    """One artifact shape. ``card``: written beside the model and carried into its metadata
    (as ``ocr-export --card``); without one, names fall back to ``class_<k>`` and the runtime
    to its own palette."""

    layout: str = "NHWC"
    size: int = 64
    channels: int = 3
    classes: int = 4
    scores: str = "logits"  # the scores output's kind: logits or probabilities
    labels: bool = True  # an in-graph int32 ArgMax output
    labels_only: bool = False  # verified with its scores, shipped without them
    normalize_in_graph: bool = False
    card: ModelCard | None = None
    mean: tuple[float, ...] = (127.5, 127.5, 127.5)  # without a card
    std: tuple[float, ...] = (64.0, 64.0, 64.0)
    batch: int | None = None  # a fixed batch (as a model saved with batch_size=N exports)
    seed: int | None = None  # of the weights (default: the name's length)


VARIANTS = {
    # logits + in-graph labels, a model card (names, palette, per-channel normalisation)
    "nhwc": Variant(card=ModelCard(class_names=CLASS_NAMES, palette=PALETTE, mean=MEAN,
                                   std=STD)),
    # labels only, the normalisation in the graph (it takes raw pixels), no card
    "nchw_labels": Variant(layout="NCHW", labels_only=True, normalize_in_graph=True),
    # more than 256 classes: uint16 label maps
    "many_classes": Variant(size=16, classes=300, labels=False),
    # a greyscale input
    "grey": Variant(size=16, channels=1, classes=5, labels=False, mean=(127.5,), std=(64.0,)),
    # a net ending in a softmax: probabilities, as ocr-export names such a model's scores
    "probabilities": Variant(scores="probabilities"),
    # "nhwc" (its weights) with a fixed batch of 2: what a Keras model saved with
    # batch_size=2 exports to
    "nhwc_batch2": Variant(card=ModelCard(class_names=CLASS_NAMES, palette=PALETTE,
                                          mean=MEAN, std=STD), batch=2, seed=len("nhwc")),
}


def build(name: str, folder: Path) -> Path:
    """Write variant ``name`` (and its card, if it has one) into ``folder``; return the ONNX."""
    import onnx

    from ocr_deploy.contract.metadata import write_metadata
    from ocr_deploy.contract.signature import check_onnx

    variant = VARIANTS[name]
    folder.mkdir(parents=True, exist_ok=True)
    if variant.card:
        variant.card.save(folder / f"{name}.card.json")
    weights = _weights(variant, seed=len(name) if variant.seed is None else variant.seed)
    verified = _graph(name, variant, weights, scores=True)
    parity = _parity(variant, verified, weights)
    model = _graph(name, variant, weights, scores=not variant.labels_only)
    onnx.checker.check_model(model, full_check=True)
    write_metadata(model, _metadata(name, variant, model, weights, parity))
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    check_onnx(path)
    return path


# the ocr-export options that make the real export of a variant
EXPORT_OPTIONS = {"nhwc": {"argmax": True},
                  "nchw_labels": {"nchw": True, "labels_only": True, "normalize_in_graph": True}}


def exported(name: str, keras_h5: Path, folder: Path) -> Path:
    """``keras_h5`` exported by ocr-export into ``folder`` as variant ``name`` is built
    (needs TensorFlow); return the ONNX path."""
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    options = dict(EXPORT_OPTIONS[name])
    if VARIANTS[name].card:
        options["card"] = folder / f"{name}.card.json"
        VARIANTS[name].card.save(options["card"])
    return export_model(ExportRequest(model=keras_h5, output=folder / f"{name}.onnx",
                                      quiet=True, random_samples=PARITY_SAMPLES,
                                      **options)).onnx_path


def _weights(variant: Variant, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c, k = variant.channels, variant.classes
    return {"w1": rng.normal(0, np.sqrt(2 / (9 * c)), (HIDDEN, c, 3, 3)),
            "b1": rng.normal(0, 0.1, HIDDEN), "w2": rng.normal(0, np.sqrt(1 / HIDDEN),
                                                              (k, HIDDEN, 1, 1)),
            "b2": rng.normal(0, 0.1, k)}


def _normalisation(variant: Variant) -> tuple[list[float], list[float]]:
    """The net's (mean, std) on pixels 0..255, in the graph or before it."""
    if variant.card:
        return list(variant.card.mean), list(variant.card.std)
    return list(variant.mean), list(variant.std)


def _fed(variant: Variant) -> tuple[list[float], list[float]]:
    """The (mean, std) the runtime applies before feeding the graph (the metadata's)."""
    if variant.normalize_in_graph:
        return [0.0] * variant.channels, [1.0] * variant.channels
    return _normalisation(variant)


def _graph(name: str, variant: Variant, weights: dict[str, np.ndarray], scores: bool):
    """image -> [normalise] -> Conv 3x3 -> Relu -> Conv 1x1 -> [Softmax] -> [scores], labels."""
    from onnx import TensorProto, helper, numpy_helper

    nchw, s, c, k = variant.layout == "NCHW", variant.size, variant.channels, variant.classes
    n = variant.batch or "batch"
    initializers = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in weights.items()]
    nodes, x = [], INPUT_NAME
    if variant.normalize_in_graph:  # the graph takes pixels 0..255
        shape = [1, c, 1, 1] if nchw else [1, 1, 1, c]
        initializers += [numpy_helper.from_array(np.reshape(v, shape).astype(np.float32), n)
                         for n, v in zip(("mean", "std"), _normalisation(variant),
                                         strict=True)]
        nodes += [helper.make_node("Sub", [x, "mean"], ["centred"]),
                  helper.make_node("Div", ["centred", "std"], ["normalised"])]
        x = "normalised"
    if not nchw:
        nodes.append(helper.make_node("Transpose", [x], ["image_nchw"], perm=[0, 3, 1, 2]))
        x = "image_nchw"
    nodes += [helper.make_node("Conv", [x, "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["conv1"], ["features"]),
              helper.make_node("Conv", ["features", "w2", "b2"], ["scores_nchw"])]
    if variant.scores == "probabilities":
        nodes.append(helper.make_node("Softmax", ["scores_nchw"], ["probs_nchw"], axis=1))
    last = "probs_nchw" if variant.scores == "probabilities" else "scores_nchw"
    outputs = []
    if scores:
        if nchw:
            nodes.append(helper.make_node("Identity", [last], [variant.scores]))
        else:
            nodes.append(helper.make_node("Transpose", [last], [variant.scores],
                                          perm=[0, 2, 3, 1]))
        dims = [n, k, s, s] if nchw else [n, s, s, k]
        outputs.append(helper.make_tensor_value_info(variant.scores, TensorProto.FLOAT, dims))
    if variant.labels:
        nodes += [helper.make_node("ArgMax", [last], ["labels_64"], axis=1, keepdims=0),
                  helper.make_node("Cast", ["labels_64"], ["labels"], to=TensorProto.INT32)]
        outputs.append(helper.make_tensor_value_info("labels", TensorProto.INT32,
                                                     [n, s, s]))
    dims = [n, c, s, s] if nchw else [n, s, s, c]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, dims)], outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             ir_version=8)


def reference(variant: Variant, weights: dict[str, np.ndarray], pixels: np.ndarray
              ) -> dict[str, np.ndarray]:
    """The net in NumPy (float64) on NHWC pixels 0..255: NHWC scores and labels by name."""
    mean, std = _normalisation(variant)
    x = ((pixels - np.asarray(mean)) / np.asarray(std)).transpose(0, 3, 1, 2)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    hidden = np.einsum("nchwyx,ocyx->nohw", windows, weights["w1"])
    hidden = np.maximum(hidden + weights["b1"][:, None, None], 0)
    scores = np.einsum("nchw,oc->nhwo", hidden, weights["w2"][:, :, 0, 0]) + weights["b2"]
    if variant.scores == "probabilities":
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
    out = {variant.scores: scores}
    if variant.labels:
        out["labels"] = scores.argmax(-1)
    return out


def _parity(variant: Variant, model, weights) -> dict:
    """ONNX Runtime against ``reference`` on random pixels, summarised as ocr-export does."""
    import onnxruntime as ort

    from ocr_deploy.verification.comparison import compare

    rng = np.random.default_rng(0)
    s, c = variant.size, variant.channels
    pixels = rng.integers(0, 256, (PARITY_SAMPLES, s, s, c)).astype(np.float32)
    mean, std = _fed(variant)
    feed = (pixels - np.float32(mean)) / np.float32(std)
    if variant.layout == "NCHW":
        feed = feed.transpose(0, 3, 1, 2)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    candidate = dict(zip(names, session.run(names, {INPUT_NAME: feed}), strict=True))
    if variant.layout == "NCHW":
        candidate[variant.scores] = candidate[variant.scores].transpose(0, 2, 3, 1)
    expected = reference(variant, weights, pixels.astype(np.float64))
    report = compare(expected, candidate, {n: "labels" if n == "labels" else variant.scores
                                           for n in expected})
    if not report.passed:
        raise AssertionError(f"hand-built artifact disagrees with its reference:\n"
                             f"{report.table()}")
    source = "the normalisation in the graph (--normalize-in-graph)" \
        if variant.normalize_in_graph else "flags or card"
    inputs = {"mean": mean, "std": std, "source": source, "layers": None,
              "description": f"(pixel - mean) / std, from {source}"}
    return {**report.summary(), "inputs": inputs}


def _metadata(name: str, variant: Variant, model, weights, parity: dict):
    """The metadata ocr-export writes for such a model (see export.pipeline._metadata)."""
    import onnx
    import onnxruntime

    import ocr_deploy
    from ocr_deploy.contract.metadata import ExportMetadata
    from ocr_deploy.graph.attention import apply_attention_form

    card = variant.card or ModelCard()
    outputs = {}
    if not variant.labels_only:
        outputs[variant.scores] = {"kind": variant.scores, "layout": variant.layout,
                                   "stride": 1}
    if variant.labels:
        outputs["labels"] = {"kind": "labels", "layout": "NHW", "stride": 1}
    mean, std = _fed(variant)
    _, attention = apply_attention_form(model, "auto", "onnxruntime", source=name)
    digest = hashlib.sha256(repr(sorted((k, v.tolist()) for k, v in weights.items()))
                            .encode()).hexdigest()
    return ExportMetadata(
        input_layout=variant.layout, input_height=variant.size, input_width=variant.size,
        input_channels=variant.channels, color_order=card.color_order,
        normalization={"mean": mean, "std": std, "in_graph": variant.normalize_in_graph},
        num_classes=variant.classes,
        class_names=card.class_names or [f"class_{i}" for i in range(variant.classes)],
        palette=card.palette, outputs=outputs,
        source={"file": f"{name}.py", "sha256": digest, "format": "onnx.helper",
                "loaded_with": None, "written_by_keras": None,
                "keras_output": variant.scores, "dtype_policy": None},
        tools={"ocr_deploy": ocr_deploy.__version__, "tensorflow": None, "tf2onnx": None,
               "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
               "onnxslim": None, "opset": attention["opset"],
               "batch": variant.batch or "dynamic",
               "fixed_batch_because": None},
        parity=parity, attention=attention, notes=card.notes)
