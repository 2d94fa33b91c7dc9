"""TensorRT engine builds. These need TensorRT and an NVIDIA GPU; elsewhere they skip and
say why. Nothing here has run on this project's CPU-only machines."""

from __future__ import annotations

import numpy as np
import pytest

from ocr_deploy.backends.tensorrt.library import availability
from ocr_deploy.contract.metadata import INPUT_NAME

AVAILABLE, REASON = availability()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not AVAILABLE, reason=f"TensorRT engine build: {REASON}")]


@pytest.fixture(scope="module")
def small_onnx(keras3_h5, tmp_path_factory):
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    out = tmp_path_factory.mktemp("trt") / "small.onnx"
    return export_model(ExportRequest(model=keras3_h5, output=out, nchw=True, argmax=True,
                                      quiet=True)).onnx_path


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_and_deserialises(small_onnx, tmp_path, precision):
    import tensorrt as trt

    from ocr_deploy.builder.pipeline import BuildRequest, build

    result = build(BuildRequest(onnx=small_onnx, precision=precision, backend="tensorrt",
                                output=tmp_path / f"m_{precision}.engine", quiet=True))
    info = result.info
    assert info["backend"] == "tensorrt" and info["tensorrt_version"] == trt.__version__
    runner = info["verification"]["accuracy"]["runner"]  # the verdict ran the engine itself
    assert runner["backend"] == "tensorrt" and runner["gpu_name"] == info["gpu_name"]
    assert info["verification"]["met_budget"] and "synthetic" in info["verification"]["data"]
    assert info["gpu_name"] and info["compute_capability"]
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        result.artifact.read_bytes())
    assert engine is not None
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert INPUT_NAME in names and "labels" in names
    assert info["timing_cache"] == str(tmp_path / "timing.cache")  # the library's default
    assert (tmp_path / "timing.cache").stat().st_size > 0


def test_timing_cache_is_reused(small_onnx, tmp_path):
    from ocr_deploy.backends.tensorrt.options import TensorRTOptions
    from ocr_deploy.builder.pipeline import BuildRequest, build

    options = {"tensorrt": TensorRTOptions(timing_cache=tmp_path / "timing.cache")}
    for name in ("a", "b"):
        build(BuildRequest(onnx=small_onnx, precision="fp32", backend="tensorrt",
                           output=tmp_path / f"{name}.engine", verify=False, quiet=True,
                           backend_options=options))
    assert (tmp_path / "timing.cache").stat().st_size > 0


def test_foreign_timing_cache_is_replaced_not_fatal(small_onnx, tmp_path):
    from ocr_deploy.builder.pipeline import BuildRequest, build

    (tmp_path / "timing.cache").write_bytes(b"not a timing cache from this TensorRT")
    result = build(BuildRequest(onnx=small_onnx, precision="fp32", backend="tensorrt",
                                output=tmp_path / "m.engine", verify=False, quiet=True))
    assert result.artifact.is_file()
    assert (tmp_path / "timing.cache").read_bytes() != b"not a timing cache from this TensorRT"


def test_int8_engine_from_tensorrt_placement(small_onnx, tmp_path):
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.demo.synthetic import write_samples
    from ocr_deploy.verification.accuracy import Budget

    calib = tmp_path / "calib"
    write_samples(calib, 8)
    result = build(BuildRequest(onnx=small_onnx, precision="int8", backend="tensorrt",
                                output=tmp_path / "m.engine", calib_dir=calib, calib_samples=8,
                                budget=Budget(max_miou_drop=100, min_agreement=0.5),
                                quiet=True))
    assert result.info["placement"]["name"] == "tensorrt"
    assert result.info["placement"]["float_type"] == "fp16"  # strongly typed: FP16 outside
    assert result.info["verification"]["accuracy"]["runner"]["backend"] == "tensorrt"
    assert result.info["int8_coverage"]["integer_mac_share"] > 0.5


def test_fp32_on_dla_is_refused(small_onnx, tmp_path):
    from ocr_deploy.backends.tensorrt.options import TensorRTOptions
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.errors import BadInputError

    with pytest.raises(BadInputError, match="DLA"):
        build(BuildRequest(onnx=small_onnx, precision="fp32", backend="tensorrt",
                           output=tmp_path / "m.engine", verify=False, quiet=True,
                           backend_options={"tensorrt": TensorRTOptions(dla_core=0)}))


@pytest.mark.parametrize("precision, sizes", [("fp16", "fixed"), ("int8", "range")])
def test_end_to_end_engine_builds_runs_and_matches_predict(small_onnx, tmp_path, precision,
                                                           sizes):
    """An end-to-end engine (uint8 frames in, labels out) for a fixed size and for a range
    (the uint8 input's optimisation profile): its verdict and parity ran the engine itself,
    and its labels equal Segmenter.predict on the plain export outside ties."""
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.demo.synthetic import write_samples
    from ocr_deploy.runtime import Segmenter
    from ocr_deploy.verification.accuracy import Budget
    from ocr_deploy.verification.end_to_end_parity import end_to_end_parity, sample_images

    image_sizes = ImageSizes.fixed(120, 160) if sizes == "fixed" else \
        ImageSizes((48, 64), (240, 320), (120, 160))
    calib = tmp_path / "calib"
    write_samples(calib, 8)
    result = build(BuildRequest(
        onnx=small_onnx, precision=precision, backend="tensorrt", quiet=True,
        output=tmp_path / f"e2e_{precision}.engine", calib_dir=calib, calib_samples=8,
        budget=Budget(max_miou_drop=100, min_agreement=0.9),
        end_to_end=EndToEndRequest(image_sizes, "BGR")))
    info = result.info
    assert info["verification"]["accuracy"]["runner"]["backend"] == "tensorrt"
    profile = info["profiles"][0]
    assert profile["input"] == INPUT_NAME and profile["opt"][1:] == [120, 160, 3]
    assert info["end_to_end_parity"]["agreement_excl_ties"] >= 0.999
    images = sample_images([(120, 160)] if sizes == "fixed" else [(48, 64), (131, 97)])
    with Segmenter.open(result.artifact) as engine, Segmenter.open(small_onnx) as plain:
        assert engine.runner.input_dtype == np.uint8
        report = end_to_end_parity(engine, plain, images)
    assert report["agreement_excl_ties"] >= (0.999 if precision == "fp16" else 0.9)
