"""The hand-built artifacts of tests/artifacts.py: each passes the checks an export passes,
runs, and is rebuilt byte for byte (every pytest-xdist worker builds its own); the two that
stand for real exports keep their shape (metadata, tensors), so that the tests moved onto
them still test what an export gives."""

from __future__ import annotations

import artifacts
import numpy as np
import onnx
import pytest

from ocr_deploy.contract.metadata import read_metadata
from ocr_deploy.contract.signature import check_onnx, onnx_signature
from ocr_deploy.runtime import Segmenter

FIXTURES = {"nhwc": "nhwc_onnx", "nchw_labels": "nchw_onnx",
            "many_classes": "many_classes_onnx", "grey": "grey_onnx",
            "probabilities": "probabilities_onnx", "nhwc_batch2": "batch2_onnx"}


@pytest.mark.parametrize("variant", list(artifacts.VARIANTS))
def test_each_artifact_is_checked_runs_and_rebuilds_identically(variant, request, tmp_path):
    fixture = request.getfixturevalue(FIXTURES[variant])
    path = artifacts.build(variant, tmp_path)
    assert path.read_bytes() == fixture.read_bytes()
    meta, spec = check_onnx(path), artifacts.VARIANTS[variant]
    assert meta.parity["passed"] and meta.parity["samples"] == artifacts.PARITY_SAMPLES
    assert (meta.num_classes, meta.input_channels, meta.input_layout) == \
        (spec.classes, spec.channels, spec.layout)
    assert (path.parent / f"{variant}.card.json").is_file() == (spec.card is not None)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(30, 20), (9, 70)]]
    if spec.channels == 1:
        images = [image[..., 0] for image in images]
    with Segmenter.open(path) as seg:
        labels = seg.predict(images)
    for image, label_map in zip(images, labels, strict=True):
        assert label_map.shape == image.shape[:2]
        assert label_map.min() >= 0 and label_map.max() < spec.classes


def _tensors(path) -> dict:
    signature = onnx_signature(onnx.load(str(path)))
    return {t.name: (t.shape, t.dtype) for t in (*signature.inputs, *signature.outputs)}


@pytest.mark.tensorflow
@pytest.mark.parametrize("variant", ["nhwc", "nchw_labels"])
def test_hand_built_artifacts_keep_the_shape_of_real_exports(variant, request):
    built = request.getfixturevalue(FIXTURES[variant])
    real = request.getfixturevalue(f"exported_{FIXTURES[variant]}")
    assert _tensors(built) == _tensors(real)
    ours, theirs = read_metadata(built).__dict__, read_metadata(real).__dict__
    assert ours.keys() == theirs.keys()
    for key in ("input_name", "input_layout", "input_height", "input_width",
                "input_channels", "color_order", "normalization", "resize", "num_classes",
                "class_names", "palette", "outputs", "precision", "build", "notes",
                "format_version"):
        assert ours[key] == theirs[key], key
    for key in ("source", "tools", "attention"):
        assert ours[key].keys() == theirs[key].keys(), key
    assert ours["parity"].keys() == theirs["parity"].keys()
    assert ours["parity"]["inputs"].keys() == theirs["parity"]["inputs"].keys()
