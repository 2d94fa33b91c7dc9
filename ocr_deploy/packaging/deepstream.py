"""A DeepStream ``nvinfer`` configuration for semantic segmentation
(``ocr-package ARTIFACT --deepstream DIR``).

nvinfer preprocesses as ``y = net-scale-factor * (x - offsets[c])``: one scale for all
channels. The export's ``(x - mean[c]) / std[c]`` maps onto it when the graph normalises
itself (scale 1, offsets 0) or the three std values are equal; otherwise the artifact must
be re-exported with ``--normalize-in-graph``. nvinfer reads class scores (the ``logits``
or ``probabilities`` output) and takes the per-pixel argmax itself; a labels-only artifact
cannot be used, nor an end-to-end one (``--end-to-end``: uint8 frames in, labels out),
whose input is not the scaled float tensor nvinfer feeds and whose output is no score map.
Written from NVIDIA's documented ``nvinfer`` properties; not run here (no DeepStream, no GPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ocr_deploy.errors import BadInputError, OutputExistsError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.packaging.artifact_info import ArtifactInfo

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode values
COLOR_FORMATS = {"RGB": 0, "BGR": 1, "GRAY": 2}  # model-color-format values
ORDERS = {"NCHW": 0, "NHWC": 1}  # network-input-order / segmentation-output-order values


def nvinfer_properties(info: ArtifactInfo, model_file: str, labels_file: str,
                       batch_size: int = 1) -> dict[str, str]:
    """The ``[property]`` group of the nvinfer configuration, in file order."""
    meta = info.metadata
    if meta.end_to_end:
        raise BadInputError(info.path, "a plain artifact for DeepStream (nvinfer scales the "
                            "frames to a float input itself, and its segmentation output "
                            "(network-type=2) takes class scores and does its own argmax)",
                            "an end-to-end artifact (uint8 images in, labels out)",
                            "package the plain build (ocr-build-engine without --end-to-end) "
                            "for DeepStream, or serve this one with ocr-package --triton")
    logits = info.output_of_kind("logits") or info.output_of_kind("probabilities")
    if logits is None:
        raise BadInputError(info.path, "a model with a logits output (nvinfer takes the "
                            "argmax of class scores itself)", "labels only",
                            "re-export without --labels-only")
    scale, offsets = _normalisation(info)
    color = "GRAY" if meta.input_channels == 1 else meta.color_order.upper()
    if color not in COLOR_FORMATS:
        raise BadInputError(info.path, "RGB, BGR or greyscale input", color,
                            "re-export the model")
    output_layout = meta.outputs.get(logits.name, {}).get("layout", meta.input_layout)
    model_key = info.backend.deepstream_model_key
    return {
        "gpu-id": "0",
        "gie-unique-id": "1",
        "process-mode": "1",
        "network-type": "2",
        model_key: model_file,
        "labelfile-path": labels_file,
        "batch-size": str(batch_size),
        "network-mode": str(NETWORK_MODES.get(info.precision, 0)),
        "model-color-format": str(COLOR_FORMATS[color]),
        "net-scale-factor": _number(scale),
        "offsets": ";".join(_number(v) for v in offsets),
        "infer-dims": f"{meta.input_channels};{meta.input_height};{meta.input_width}",
        "network-input-order": str(ORDERS[meta.input_layout]),
        "maintain-aspect-ratio": "0",
        "scaling-filter": "1",
        "num-detected-classes": str(meta.num_classes),
        "output-blob-names": logits.name,
        "segmentation-output-order": str(ORDERS.get(output_layout, 0)),
        "segmentation-threshold": "0.0",
    }


def write_deepstream(info: ArtifactInfo, folder: Path, force: bool = False,
                     batch_size: int | None = None) -> list[Path]:
    """Write ``NAME_nvinfer.txt``, ``NAME_labels.txt`` and a copy of the model into
    ``folder`` (paths in the config are relative to it, as nvinfer resolves them)."""
    folder = Path(folder)
    name = info.path.name.split(".")[0]
    config = folder / f"{name}_nvinfer.txt"
    labels = folder / f"{name}_labels.txt"
    model = folder / info.path.name
    for path in (config, labels, model):
        if path.exists() and not force:
            raise OutputExistsError(path, "a path that does not exist yet", "an existing file",
                                    "pass --force to replace it")
    batch = batch_size or (info.profile_batches[1] if info.profile_batches else 1)
    properties = nvinfer_properties(info, model.name, labels.name, batch)
    header = (f"# nvinfer configuration for {info.path.name}, written by ocr-package from its "
              "metadata.\n# Semantic segmentation (network-type=2). Not run by ocr-deploy: it "
              "needs DeepStream on an NVIDIA GPU.\n# segmentation-threshold applies to the "
              "class scores: pixels whose best score is below it get class -1.\n")
    text = header + "[property]\n" + "".join(f"{k}={v}\n" for k, v in properties.items())
    folder.mkdir(parents=True, exist_ok=True)
    names = list(info.metadata.class_names)
    names += [f"class_{i}" for i in range(len(names), info.metadata.num_classes)]
    write_bytes_atomic(labels, "".join(f"{n}\n" for n in names).encode())
    if model.resolve() != info.path.resolve():
        shutil.copyfile(info.path, model)
    write_bytes_atomic(config, text.encode())
    return [config, labels, model]


def _normalisation(info: ArtifactInfo) -> tuple[float, list[float]]:
    norm = info.metadata.normalization
    channels = info.metadata.input_channels
    if norm.get("in_graph"):
        return 1.0, [0.0] * channels
    mean = [float(v) for v in norm.get("mean", [0.0] * channels)]
    std = [float(v) for v in norm.get("std", [1.0] * channels)]
    if max(std) - min(std) > 1e-6 * max(std):
        raise BadInputError(info.path, "one std for all channels (nvinfer has a single "
                            "net-scale-factor)", f"std {std}",
                            "re-export with --normalize-in-graph, then build again")
    return 1.0 / std[0], mean[:channels]


def _number(value: float) -> str:
    return repr(float(value))
