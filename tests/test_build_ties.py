"""Build-time agreement counts ties the way export parity does (issue #9, item 8): a model
whose logits are nearly tied everywhere must not fail an FP16 build on pixels that may go
either way. A hand-built ONNX with export metadata: no TensorFlow."""

from __future__ import annotations

import onnx
from onnx_models import small_segnet, small_segnet_metadata, write_inputs

from ocr_deploy.builder.pipeline import BuildRequest, build
from ocr_deploy.contract.metadata import write_metadata


def _fp16_verification(tmp_path, tied: bool) -> dict:
    """Build FP16 of the (near-tied or plain) model, verified on its calibration inputs."""
    model = small_segnet(tied=tied)
    write_metadata(model, small_segnet_metadata())
    path = tmp_path / "segnet.onnx"
    onnx.save(model, str(path))
    data = tmp_path / "data"
    write_inputs(data, 8)
    return build(BuildRequest(onnx=path, precision="fp16", backend="onnxruntime",
                              output=tmp_path / "segnet_fp16.onnx", calib_dir=data,
                              calib_samples=8, quiet=True)).info["verification"]


def test_near_ties_are_set_aside(tmp_path):
    verification = _fp16_verification(tmp_path, tied=True)
    accuracy = verification["accuracy"]
    assert verification["met_budget"] and accuracy["tie_tolerance"] > 0
    assert accuracy["agreement_all_pixels"] < 0.9  # FP16 flips many near-tied argmaxes
    assert accuracy["tie_pixels"] > 0 and accuracy["agreement"] >= 0.97


def test_clear_winners_are_not_ties(tmp_path):
    accuracy = _fp16_verification(tmp_path, tied=False)["accuracy"]
    assert accuracy["agreement"] > 0.99 and accuracy["tie_pixels"] < 10
