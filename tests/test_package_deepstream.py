"""ocr-package --deepstream: the nvinfer configuration, every key checked against a table of
DeepStream's documented Gst-nvinfer properties (NVIDIA DeepStream SDK, "Gst-nvinfer" plugin
guide and gstnvinfer_property_parser.h). DeepStream cannot run here (no GPU)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from ocr_deploy.contract.metadata import read_metadata, write_metadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.packaging.artifact_info import read_artifact
from ocr_deploy.packaging.cli import main as package_main
from ocr_deploy.packaging.deepstream import write_deepstream


def integer(*allowed):
    return lambda v: int(v) in allowed if allowed else int(v) >= 0


def floats(count=None):
    def check(value):
        values = [float(v) for v in value.split(";")]
        return count is None or len(values) == count
    return check


def non_empty(value):
    return bool(value.strip())


# key -> (documented meaning, check of the value's documented form)
NVINFER_PROPERTIES = {
    "gpu-id": ("device ID of the GPU to use", integer()),
    "gie-unique-id": ("unique ID of this GIE, to tell its metadata apart", integer()),
    "process-mode": ("1 = primary (full frame), 2 = secondary (objects)", integer(1, 2)),
    "network-type": ("0 detector, 1 classifier, 2 segmentation, 3 instance segmentation",
                     integer(0, 1, 2, 3)),
    "onnx-file": ("path to the ONNX model file", non_empty),
    "model-engine-file": ("path to the serialized TensorRT engine", non_empty),
    "labelfile-path": ("path to the text file with the class labels", non_empty),
    "batch-size": ("number of frames/objects inferred together", lambda v: int(v) >= 1),
    "network-mode": ("data format for inference: 0 FP32, 1 INT8, 2 FP16", integer(0, 1, 2)),
    "model-color-format": ("colour format the model needs: 0 RGB, 1 BGR, 2 GRAY",
                           integer(0, 1, 2)),
    "net-scale-factor": ("pixel normalisation factor: y = net-scale-factor * (x - mean)",
                         lambda v: float(v) > 0),
    "offsets": ("per-channel mean subtracted before scaling, ';'-separated", floats()),
    "infer-dims": ("input binding dimensions 'channel;height;width'",
                   lambda v: len(v.split(";")) == 3 and all(int(d) > 0 for d in v.split(";"))),
    "network-input-order": ("order of the network input: 0 NCHW, 1 NHWC", integer(0, 1)),
    "maintain-aspect-ratio": ("keep the aspect ratio when scaling to network size",
                              integer(0, 1)),
    "scaling-filter": ("scaling filter: 0 nearest, 1 bilinear, ...", integer(0, 1, 2, 3, 4)),
    "num-detected-classes": ("number of classes the network outputs", lambda v: int(v) >= 1),
    "output-blob-names": ("';'-separated names of the output layers", non_empty),
    "segmentation-output-order": ("order of the segmentation output: 0 NCHW, 1 NHWC",
                                  integer(0, 1)),
    "segmentation-threshold": ("confidence threshold for a pixel's class; non-negative",
                               lambda v: float(v) >= 0),
}


def read_config(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.sections() == ["property"]
    return dict(parser["property"])


def with_normalisation(source: Path, target: Path, **normalization) -> Path:
    """A copy of ``source`` whose metadata says another normalisation (same graph)."""
    import onnx

    model = onnx.load(str(source))
    meta = read_metadata(model)
    meta.normalization = {**meta.normalization, **normalization}
    write_metadata(model, meta)
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def equal_std_onnx(nhwc_onnx, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ds_models")
    return with_normalisation(nhwc_onnx, folder / "seg.onnx", mean=[120.0, 110.0, 100.0],
                              std=[64.0, 64.0, 64.0])


def test_every_key_is_a_documented_nvinfer_property(equal_std_onnx, tmp_path):
    config, labels, model = write_deepstream(read_artifact(equal_std_onnx), tmp_path)
    properties = read_config(config)
    for key, value in properties.items():
        assert key in NVINFER_PROPERTIES, f"{key} is not a documented nvinfer property"
        assert NVINFER_PROPERTIES[key][1](value), f"{key}={value}: not the documented form"
    assert properties["network-type"] == "2"
    assert properties["onnx-file"] == model.name and model.read_bytes() == \
        equal_std_onnx.read_bytes()
    assert properties["labelfile-path"] == labels.name
    assert labels.read_text().splitlines() == ["background", "disc", "square", "ring"]
    assert properties["net-scale-factor"] == repr(1 / 64)
    assert properties["offsets"] == "120.0;110.0;100.0"
    assert properties["infer-dims"] == "3;64;64"
    assert properties["network-input-order"] == "1"  # NHWC model
    assert properties["model-color-format"] == "0"  # RGB
    assert properties["network-mode"] == "0"  # fp32
    assert properties["num-detected-classes"] == "4"
    assert properties["output-blob-names"] == "logits"
    assert properties["segmentation-output-order"] == "1"
    assert "not run by ocr-deploy" in config.read_text().lower()


def test_normalisation_in_graph_and_precision(equal_std_onnx, tmp_path):
    source = with_normalisation(equal_std_onnx, tmp_path / "seg_int8.onnx", in_graph=True)
    import onnx

    model = onnx.load(str(source))
    meta = read_metadata(model)
    meta.precision = "int8"
    write_metadata(model, meta)
    onnx.save(model, str(source))
    properties = read_config(write_deepstream(read_artifact(source), tmp_path / "out")[0])
    assert properties["net-scale-factor"] == "1.0" and properties["offsets"] == "0.0;0.0;0.0"
    assert properties["network-mode"] == "1"


def test_unrepresentable_models_are_refused(nhwc_onnx, nchw_onnx, tmp_path):
    # per-channel std (127.5, 60, 70): nvinfer has a single scale factor
    with pytest.raises(BadInputError, match="--normalize-in-graph"):
        write_deepstream(read_artifact(nhwc_onnx), tmp_path)
    # labels only: nvinfer needs the class scores
    with pytest.raises(BadInputError, match="without --labels-only"):
        write_deepstream(read_artifact(nchw_onnx), tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written on refusal


def test_cli_and_force(equal_std_onnx, tmp_path, capsys):
    target = tmp_path / "ds"
    assert package_main([str(equal_std_onnx), "--deepstream", str(target), "-q"]) == 0
    assert sorted(p.name for p in target.iterdir()) == \
        ["seg.onnx", "seg_labels.txt", "seg_nvinfer.txt"]
    assert package_main([str(equal_std_onnx), "--deepstream", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert package_main([str(equal_std_onnx), "--deepstream", str(target), "--force"]) == 0


def test_probabilities_output_is_used_like_logits(equal_std_onnx, tmp_path):
    """A model ending in a softmax exports ``probabilities`` scores; nvinfer reads those."""
    import onnx

    model = onnx.load(str(equal_std_onnx))
    meta = read_metadata(model)
    meta.outputs = {name: ({**spec, "kind": "probabilities"} if spec["kind"] == "logits"
                           else spec) for name, spec in meta.outputs.items()}
    write_metadata(model, meta)
    onnx.save(model, str(tmp_path / "soft.onnx"))
    properties = read_config(write_deepstream(read_artifact(tmp_path / "soft.onnx"),
                                              tmp_path / "out")[0])
    assert properties["output-blob-names"] == "logits"  # the graph's name for the scores
    assert properties["segmentation-output-order"] == "1"
