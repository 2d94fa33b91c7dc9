"""Streamed calibration: ranges equal the all-at-once ranges, memory groups change nothing,
the cache is validated, non-finite data is refused. Hand-built ONNX models, no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import small_segnet, small_segnet_metadata, write_inputs

from ocr_deploy.errors import BadInputError
from ocr_deploy.precision.calibrate import (
    CACHE_VERSION,
    CalibrationSettings,
    calibrate,
    calibrated_tensors,
)
from ocr_deploy.precision.calibration_data import load_samples
from ocr_deploy.precision.ranges import entropy_threshold, percentile_threshold

BINS = 2048


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    inputs = write_inputs(folder, 24, size=32)
    model = small_segnet(size=32)
    data = load_samples(folder, small_segnet_metadata(32))
    return model, data, inputs


def _all_at_once(model: onnx.ModelProto, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every calibrated tensor over all samples in one run (the reference)."""
    tensors = calibrated_tensors(model)
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    known = {o.name for o in augmented.graph.output}
    augmented.graph.output.extend(onnx.helper.make_tensor_value_info(
        name, onnx.TensorProto.FLOAT, None) for name in tensors if name not in known)
    options = ort.SessionOptions()  # the calibrator's level: same kernels, same rounding
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(augmented.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    values = session.run(tensors, {"image": inputs})
    return dict(zip(tensors, values, strict=True))


def test_minmax_streamed_equals_all_at_once_exactly(setup, tmp_path):
    model, data, inputs = setup
    streamed = calibrate(model.SerializeToString(), data, CalibrationSettings("minmax"),
                         tmp_path, quiet=True).ranges
    reference = _all_at_once(model, inputs)
    assert set(streamed) == set(reference) and len(streamed) >= 10
    for name, values in reference.items():
        assert streamed[name].minimum == float(values.min())
        assert streamed[name].maximum == float(values.max())


def test_minmax_equals_onnxruntime_calibrator(setup, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    model, data, inputs = setup
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    calibrator = create_calibrator(path, ["Conv"], str(tmp_path / "aug.onnx"),
                                   CalibrationMethod.MinMax)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": inputs[i:i + 5]} for i in range(0, len(inputs), 5)])

        def get_next(self):
            return next(self.batches, None)

    calibrator.collect_data(Reader())
    theirs = calibrator.compute_data().data
    ours = calibrate(model.SerializeToString(), data, CalibrationSettings("minmax"), tmp_path,
                     quiet=True).ranges
    compared = [name for name in theirs if name in ours]
    assert len(compared) >= 4
    for name in compared:
        low, high = theirs[name].range_value
        assert (ours[name].minimum, ours[name].maximum) == (np.ravel(low)[0], np.ravel(high)[0])


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_within_one_bin_of_all_at_once(setup, tmp_path, method):
    model, data, inputs = setup
    settings = CalibrationSettings(method, num_bins=BINS, percentile=99.9)
    streamed = calibrate(model.SerializeToString(), data, settings, tmp_path,
                         quiet=True).ranges
    clipped = 0
    for name, values in _all_at_once(model, inputs).items():
        absmax = float(np.abs(values).max())
        histogram, _ = np.histogram(np.abs(values), bins=BINS, range=(0, absmax))
        expected = entropy_threshold(histogram, absmax, settings.num_quantized_bins) \
            if method == "entropy" else percentile_threshold(histogram, absmax, 99.9)
        assert abs(streamed[name].threshold - expected) <= absmax / BINS + 1e-12, name
        clipped += streamed[name].threshold < 0.99 * absmax
    assert clipped >= 3  # real clipping, not the extremes under another name


def test_memory_groups_change_nothing(tmp_path):
    folder = tmp_path / "data"
    write_inputs(folder, 4, size=128)
    model = small_segnet(size=128)
    data = load_samples(folder, small_segnet_metadata(128))
    one = calibrate(model.SerializeToString(), data, CalibrationSettings("percentile"),
                    tmp_path / "a", quiet=True, memory_mib=1024)
    many = calibrate(model.SerializeToString(), data, CalibrationSettings("percentile"),
                     tmp_path / "b", quiet=True, memory_mib=1)
    assert one.groups == 1 and many.groups >= 3
    assert one.ranges == many.ranges


def test_cache_hit_and_validation(setup, tmp_path, capsys):
    model, data, _ = setup
    model_bytes = model.SerializeToString()
    settings = CalibrationSettings("minmax")
    first = calibrate(model_bytes, data, settings, tmp_path, quiet=True)
    document = json.loads(first.cache_path.read_text())
    assert document["body"]["version"] == CACHE_VERSION and len(document["checksum"]) == 64
    again = calibrate(model_bytes, data, settings, tmp_path, quiet=True)
    assert again.cache_hit and again.ranges == first.ranges
    assert capsys.readouterr().err == ""

    tampered = json.loads(first.cache_path.read_text())
    name = next(iter(tampered["body"]["tensors"]))
    tampered["body"]["tensors"][name][1] *= 10  # a range edited without the checksum
    bad_files = {"truncated": first.cache_path.read_text()[:50],
                 "garbled": "{not json", "tampered": json.dumps(tampered),
                 "old format": json.dumps({"data": {}, "CalibrationMethod": "MinMax"})}
    for label, text in bad_files.items():
        first.cache_path.write_text(text)
        result = calibrate(model_bytes, data, settings, tmp_path, quiet=True)
        assert not result.cache_hit, label
        assert result.ranges == first.ranges, label
        assert "ignoring calibration cache" in capsys.readouterr().err, label
        assert calibrate(model_bytes, data, settings, tmp_path, quiet=True).cache_hit, label


def test_non_finite_data_is_refused_naming_the_file(tmp_path):
    inputs = np.zeros((2, 3, 16, 16), np.float32)
    inputs[1, 0, 3, 3] = np.nan
    np.save(tmp_path / "bad.npy", inputs)
    with pytest.raises(BadInputError, match=r"bad\.npy.*NaN") as caught:
        load_samples(tmp_path, small_segnet_metadata())
    assert caught.value.exit_code == 2


def test_non_finite_activations_are_not_cached(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "huge.npy", np.full((2, 3, 16, 16), 3e38, np.float32))
    data = load_samples(folder, small_segnet_metadata())
    with pytest.raises(BadInputError, match="finite activations"):
        calibrate(small_segnet().SerializeToString(), data, CalibrationSettings("minmax"),
                  tmp_path / "cache", quiet=True)
    assert not list((tmp_path / "cache").glob("*.json"))


def test_settings_are_validated():
    with pytest.raises(BadInputError, match="percentile"):
        CalibrationSettings("percentile", percentile=250).validate()
    with pytest.raises(BadInputError, match="calibration method"):
        CalibrationSettings("kl").validate()
