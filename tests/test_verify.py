"""The build's verdict is the shipped artifact's: it runs through its own backend's runner
(here ONNX Runtime, the one backend this machine has), with or without masks, with or
without any data, and a default sample count means "up to N". Hand-built ONNX models with
export metadata: no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx_models import small_segnet, small_segnet_metadata
from PIL import Image

from ocr_deploy import backends
from ocr_deploy.builder.cli import main
from ocr_deploy.builder.pipeline import BuildRequest, build
from ocr_deploy.contract.metadata import write_metadata
from ocr_deploy.errors import BudgetError


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = small_segnet()
    write_metadata(model, small_segnet_metadata())
    path = tmp_path_factory.mktemp("verify") / "segnet.onnx"
    onnx.save(model, str(path))
    return path


def _images(folder, count: int, masks: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if masks:
        (folder / "labels").mkdir()
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            folder / f"im{index:03d}.png")
        if masks:
            Image.fromarray(rng.integers(0, 4, (20, 24), dtype=np.uint8)).save(
                folder / "labels" / f"im{index:03d}.png")
    return folder


def _sidecar(tmp_path, name):
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_fp16_with_nothing_else_verifies_on_synthetic_images(model_path, tmp_path, capsys):
    assert main([str(model_path), "--fp16", "-o", str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert "synthetic" in err and "verifying the built artifact" in err
    verification = _sidecar(tmp_path, "m.onnx")["verification"]
    assert "synthetic" in verification["data"] and verification["met_budget"]
    accuracy = verification["accuracy"]
    assert accuracy["miou"] is None and accuracy["agreement"] >= 0.97
    assert accuracy["runner"]["backend"] == "onnxruntime"
    assert accuracy["runner"]["providers"] == ["CPUExecutionProvider"]
    assert "own runner" in accuracy["runner"]["role"]
    assert accuracy["scores"]["cosine"] > 0.999


def test_masks_are_optional_and_give_miou_when_present(model_path, tmp_path):
    plain = _images(tmp_path / "plain", 6)
    masked = _images(tmp_path / "masked", 6, masks=True)
    without = build(BuildRequest(onnx=model_path, precision="fp16", val_dir=plain,
                                 output=tmp_path / "a.onnx", quiet=True)).info["verification"]
    assert without["accuracy"]["miou"] is None and "no masks" in without["data"]
    with_masks = build(BuildRequest(onnx=model_path, precision="fp16", val_dir=masked,
                                    output=tmp_path / "b.onnx", quiet=True)).info
    accuracy = with_masks["verification"]["accuracy"]
    assert accuracy["miou"] is not None and len(accuracy["per_class_iou"]) == 4
    assert abs(accuracy["miou_drop"]) < 1.0


def test_int8_with_24_images_uses_them_all_and_warns(model_path, tmp_path, capsys):
    calib = _images(tmp_path / "calib", 24)
    assert main([str(model_path), "--int8", "--calib-dir", str(calib), "-o",
                 str(tmp_path / "q.onnx"), "--max-miou-drop", "100",
                 "--min-agreement", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "24 calibration samples" in err and "fewer than the 100 recommended" in err
    info = _sidecar(tmp_path, "q.onnx")
    assert info["calibration"]["samples"] == 24 and info["verification"]["samples"] == 24
    assert main([str(model_path), "--int8", "--calib-dir", str(calib), "--calib-samples", "50",
                 "-o", str(tmp_path / "r.onnx"), "-q"]) == 2
    assert "at least 50 usable samples" in capsys.readouterr().err
    assert not (tmp_path / "r.onnx").exists()


def test_the_verdict_judges_the_artifact_the_backend_wrote(model_path, tmp_path, monkeypatch):
    """A backend that writes something other than the graph it was given: the ONNX Runtime
    proxy of that graph would pass; the verdict runs the artifact and fails it, and nothing
    is left behind."""
    onnxruntime = backends.get("onnxruntime")
    original = type(onnxruntime).build

    def sabotaged(self, model_bytes, target, artifact, meta, precision, options, progress):
        facts = original(self, model_bytes, target, artifact, meta, precision, options,
                         progress)
        model = onnx.load(str(target))
        for tensor in model.graph.initializer:
            if tensor.name.startswith("classifier_w"):
                weights = onnx.numpy_helper.to_array(tensor)
                tensor.CopyFrom(onnx.numpy_helper.from_array(-weights, tensor.name))
        onnx.save(model, str(target))
        return facts

    monkeypatch.setattr(type(onnxruntime), "build", sabotaged)
    with pytest.raises(BudgetError, match="within the budget"):
        build(BuildRequest(onnx=model_path, precision="fp16", output=tmp_path / "s.onnx",
                           quiet=True))
    assert not list(tmp_path.glob("s.onnx*"))


def test_no_verify_skips_the_verdict(model_path, tmp_path):
    info = build(BuildRequest(onnx=model_path, precision="fp16", verify=False,
                              output=tmp_path / "n.onnx", quiet=True)).info
    assert "verification" not in info
