"""Streamed calibration: ranges, histograms and thresholds equal those of all the data at
once (computed the plain way), segments change nothing, the cache is validated, non-finite
data is refused, the execution providers are chosen and recorded. Hand-built ONNX models,
no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import (
    outer_read_chain,
    small_attention_segnet,
    small_segnet,
    small_segnet_metadata,
    write_inputs,
)

from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.errors import BadInputError
from ocr_deploy.precision import ranges
from ocr_deploy.precision.calibrate import (
    CACHE_VERSION,
    CalibrationSettings,
    calibrate,
    calibrated_tensors,
    calibration_providers,
)
from ocr_deploy.precision.calibration_data import load_samples
from ocr_deploy.precision.ranges import abs_histogram, entropy_threshold, percentile_threshold

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
    values = session.run(tensors, {INPUT_NAME: inputs})
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
            self.batches = iter([{INPUT_NAME: inputs[i:i + 5]} for i in range(0, len(inputs), 5)])

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


def _plain_histogram(values: np.ndarray, absmax: float, bins: int) -> np.ndarray:
    """The histogram's definition, computed in one go: bin int(|x| * float32(bins/absmax)),
    clipped to the last bin."""
    index = (np.abs(values).astype(np.float32) * np.float32(bins / absmax)).astype(np.intp)
    return np.bincount(np.minimum(index, bins - 1).ravel(), minlength=bins)


def _plain_entropy(histogram: np.ndarray, absmax: float, quantized_bins: int) -> float:
    """The entropy search done the plain way: every candidate's divergence computed."""
    counts = histogram.astype(np.float64)
    counts[0] = counts[1]
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1][1:], [0.0]])
    best, best_bins = np.inf, len(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        for kept in range(quantized_bins, len(counts) + 1):
            divergence = ranges._divergence(counts[:kept], tail[kept - 1], quantized_bins)
            if divergence < best:
                best, best_bins = divergence, kept
    return best_bins * absmax / len(counts)


def test_streamed_results_are_exactly_the_plain_computation(tmp_path):
    """Ranges, histograms and thresholds bit for bit those computed from all the data at
    once, in one segment or in many, on a model whose Transpose/Reshape outputs share their
    source's statistics."""
    folder = tmp_path / "data"
    inputs = write_inputs(folder, 19, seed=3, size=128)  # batches 8, 8, 3; 512 KiB tensors
    model = small_attention_segnet(size=128)
    data = load_samples(folder, small_segnet_metadata(128))
    reference = _all_at_once(model, inputs)
    for method in ("entropy", "percentile"):
        settings = CalibrationSettings(method, percentile=99.0)
        results = [calibrate(model.SerializeToString(), data, settings, tmp_path / f"{mib}",
                             quiet=True, memory_mib=mib) for mib in (1024, 1)]
        assert results[0].segments == 1 and results[1].segments >= 4
        assert results[0].ranges == results[1].ranges
        for name, values in reference.items():
            absmax = float(np.abs(values).max())
            histogram = _plain_histogram(values, absmax, BINS)
            expected = _plain_entropy(histogram, absmax, 128) if method == "entropy" else \
                percentile_threshold(histogram, absmax, 99.0)
            found = results[0].ranges[name]
            assert (found.minimum, found.maximum) == (float(values.min()), float(values.max()))
            assert found.threshold == expected, (method, name)
    assert results[0].ranges["pixels"] == results[0].ranges["features"]  # rearranged


def test_a_subgraph_reading_an_earlier_segment(tmp_path):
    """An If whose branches read a tensor made two segments earlier gets it as an input."""
    folder = tmp_path / "data"
    inputs = write_inputs(folder, 2, size=256)  # 768 KiB per tensor: one per segment
    model = outer_read_chain(size=256)
    data = load_samples(folder, small_segnet_metadata(256))
    result = calibrate(model.SerializeToString(), data, CalibrationSettings("minmax"), tmp_path,
                       quiet=True, memory_mib=1)
    assert result.segments >= 4
    for name, values in _all_at_once(model, inputs).items():
        assert (result.ranges[name].minimum, result.ranges[name].maximum) == \
            (float(values.min()), float(values.max())), name


def test_histogram_is_its_definition_at_every_size():
    rng = np.random.default_rng(5)
    absmax = 3.0
    edges = np.arange(BINS + 1, dtype=np.float32) * np.float32(absmax / BINS)
    cases = [rng.normal(0, 1, size).astype(np.float32)
             for size in (0, 1, 7, ranges.CHUNK, ranges.CHUNK * 3 + 11)]
    cases.append(np.concatenate([edges, -edges, [0.0, -0.0, absmax, -absmax]]).astype(np.float32))
    cases.append(np.zeros(ranges.CHUNK + 5, np.float32))  # one long run of a single bin
    for values in cases:
        values = np.clip(values, -absmax, absmax)
        assert np.array_equal(abs_histogram(values, absmax, BINS),
                              _plain_histogram(values, absmax, BINS))
    assert abs_histogram(np.zeros((2, 3), np.float32), 0.0, BINS)[0] == 6


def test_entropy_search_equals_the_plain_scan():
    """The closed-form estimates pick the candidates to compute exactly; the threshold is the
    plain scan's on histograms of every kind, and the estimates stay far within the margin
    that guarantees it."""
    rng = np.random.default_rng(7)
    histograms = [rng.multinomial(10**6, rng.dirichlet(np.ones(BINS))),
                  rng.integers(0, 3, BINS),  # tiny counts
                  np.bincount(rng.integers(0, BINS, 30), minlength=BINS) * 7,  # sparse
                  np.eye(1, BINS, BINS - 1, dtype=np.int64)[0] * 5,  # all in the last bin
                  np.eye(1, BINS, 0, dtype=np.int64)[0] * 5]  # all zeros: nothing to compare
    for sample in (rng.standard_exponential(10**5), rng.normal(0, 1, 10**5),
                   rng.standard_cauchy(10**5)):  # ReLU-like, Gaussian, heavy-tailed
        sample[0] = 40 * np.abs(sample).max()  # an outlier: a long empty stretch
        histograms.append(_plain_histogram(sample, float(np.abs(sample).max()), BINS))
    for histogram in histograms:
        assert entropy_threshold(histogram, 2.5, 128) == _plain_entropy(histogram, 2.5, 128)
        counts = histogram.astype(np.float64)
        counts[0] = counts[1]
        if counts.sum() == 0:
            continue
        candidates = np.arange(128, BINS + 1)
        tail = np.concatenate([np.cumsum(counts[::-1])[::-1][1:], [0.0]])
        with np.errstate(invalid="ignore", divide="ignore"):
            exact = np.array([ranges._divergence(counts[:kept], tail[kept - 1], 128)
                              for kept in candidates])
        estimates = ranges._estimates(counts, 128)
        finite = np.isfinite(exact)
        assert np.array_equal(finite, np.isfinite(estimates))
        assert np.max(np.abs(estimates[finite] - exact[finite])) < ranges.ESTIMATE_ERROR / 100


def test_segments_change_nothing(tmp_path):
    folder = tmp_path / "data"
    write_inputs(folder, 4, size=128)
    model = small_segnet(size=128)
    data = load_samples(folder, small_segnet_metadata(128))
    one = calibrate(model.SerializeToString(), data, CalibrationSettings("percentile"),
                    tmp_path / "a", quiet=True, memory_mib=1024)
    many = calibrate(model.SerializeToString(), data, CalibrationSettings("percentile"),
                     tmp_path / "b", quiet=True, memory_mib=1)
    assert one.segments == 1 and many.segments >= 3
    assert one.ranges == many.ranges
    assert one.passes == many.passes == 2  # every node runs once per pass


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


def test_providers_are_chosen_recorded_and_checked(setup, tmp_path):
    model, data, _ = setup
    available = ort.get_available_providers()
    assert calibration_providers()[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in calibration_providers()) == \
        ("CUDAExecutionProvider" in available)
    result = calibrate(model.SerializeToString(), data, CalibrationSettings("minmax"), tmp_path,
                       quiet=True, providers=["cpu"])
    record = result.to_dict()
    assert record["providers"] == ["CPUExecutionProvider"]
    assert record["forward_passes_per_sample"] == 1 and record["segments"] == 1
    assert record["seconds_per_sample"] == round(result.seconds / len(data), 4) > 0
    again = calibrate(model.SerializeToString(), data, CalibrationSettings("minmax"), tmp_path,
                      quiet=True, providers=["CPUExecutionProvider"])
    assert again.cache_hit and again.providers == ["CPUExecutionProvider"]
    with pytest.raises(BadInputError, match="execution provider"):
        calibration_providers(["NoSuchExecutionProvider"])


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu with a CUDA GPU (CUDAExecutionProvider)")
def test_cuda_ranges_match_the_cpu_within_rounding(setup, tmp_path):
    """Not bit for bit: cuDNN picks its own convolution algorithms (other summation orders),
    so activations differ in their last bits; extremes agree to ~1e-5 relative and each
    histogram bin edge moves with them, so thresholds may move by a bin."""
    model, data, _ = setup
    settings = CalibrationSettings("entropy")
    cpu = calibrate(model.SerializeToString(), data, settings, tmp_path / "cpu", quiet=True,
                    providers=["cpu"])
    cuda = calibrate(model.SerializeToString(), data, settings, tmp_path / "cuda", quiet=True,
                     providers=["cuda", "cpu"])
    assert cuda.providers[0] == "CUDAExecutionProvider"
    assert cuda.cache_path != cpu.cache_path  # the providers are part of the key
    for name, found in cuda.ranges.items():
        expected = cpu.ranges[name]
        scale = max(abs(expected.minimum), abs(expected.maximum), 1e-6)
        assert abs(found.minimum - expected.minimum) <= 1e-4 * scale, name
        assert abs(found.maximum - expected.maximum) <= 1e-4 * scale, name
        assert abs(found.threshold - expected.threshold) <= 2 * scale / BINS + 1e-4 * scale, name
