"""The runtime (``Segmenter``) on real ONNX Runtime CPU: parity with Keras (on a real export)
and with a direct ONNX Runtime run, mixed image sizes, batching, device-memory entry point,
threads (on the hand-built artifacts of tests/artifacts.py)."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import onnxruntime as ort
import pytest
from artifacts import MEAN, STD
from onnx import TensorProto, helper
from PIL import Image

from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.images import resize_bilinear
from ocr_deploy.runtime import Segmenter

SIZES = [(64, 64), (97, 41), (30, 200), (128, 160)]


def _images(sizes, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _tie_free(scores: np.ndarray, tolerance: float = 1e-4) -> np.ndarray:
    """Pixels whose two best scores differ by more than ``tolerance``."""
    top2 = np.sort(scores, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) > tolerance


def _bilinear(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """ONNX Runtime's Resize (linear, half-pixel centres, no antialiasing: TensorFlow's
    bilinear resize) of ``[1,h,w,K]`` logits to ``[height,width,K]``."""
    k = logits.shape[-1]
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                          coordinate_transformation_mode="half_pixel")], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k, *logits.shape[1:3]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, k, height, width])],
        [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, k, height, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (resized,) = session.run(None, {"x": logits.transpose(0, 3, 1, 2)})
    return resized[0].transpose(1, 2, 0)


def test_predict_matches_keras_at_model_size(exported_nhwc_onnx, keras3_model):
    images = _images([(64, 64)] * 3)
    normalised = (np.stack(images).astype(np.float32) - np.float32(MEAN)) / np.float32(STD)
    keras_logits = keras3_model.predict(normalised, verbose=0)[1]
    with Segmenter.open(exported_nhwc_onnx) as segmenter:
        labels = segmenter.predict(images)
        scores = segmenter.predict_scores(images)
    for i in range(3):
        assert labels[i].shape == (64, 64) and labels[i].dtype == np.uint8
        clear = _tie_free(keras_logits[i])
        assert np.array_equal(labels[i][clear], keras_logits[i].argmax(-1)[clear])
        assert np.abs(scores[i] - keras_logits[i]).max() <= 1e-4 * np.abs(keras_logits).max()


def test_mixed_sizes_match_direct_onnxruntime(segmenter, nhwc_onnx):
    images = _images(SIZES)
    session = ort.InferenceSession(str(nhwc_onnx), providers=["CPUExecutionProvider"])
    batch = np.stack([resize_bilinear(im, 64, 64) for im in images]).astype(np.float32)
    (logits,) = session.run(["logits"], {INPUT_NAME: (batch - np.float32(MEAN)) / np.float32(STD)})
    labels = segmenter.predict(images)
    scores = segmenter.predict_scores(images)
    for i, (height, width) in enumerate(SIZES):
        # reference upsampling: bilinear with half-pixel centres, as TensorFlow resizes
        expected = _bilinear(logits[i:i + 1], height, width)
        assert labels[i].shape == (height, width) and scores[i].shape == (height, width, 4)
        assert np.abs(scores[i] - expected).max() < 1e-4
        clear = _tie_free(expected)
        assert np.array_equal(labels[i][clear], expected.argmax(-1)[clear])


def test_labels_only_nchw_model_resizes_labels_nearest(nchw_onnx):
    images = _images(SIZES, seed=4)
    session = ort.InferenceSession(str(nchw_onnx), providers=["CPUExecutionProvider"])
    batch = np.stack([resize_bilinear(im, 64, 64) for im in images]).astype(np.float32)
    (labels,) = session.run(["labels"], {INPUT_NAME: batch.transpose(0, 3, 1, 2)})  # raw pixels
    with Segmenter.open(nchw_onnx) as seg:
        assert seg.metadata.input_layout == "NCHW" and seg.logits_output is None
        assert seg.outputs_for(SIZES) == ["labels"]
        predicted = seg.predict(images)
    for i, (height, width) in enumerate(SIZES):
        # nearest neighbour of each output pixel's centre
        rows = [int((y + 0.5) * 64 / height) for y in range(height)]
        cols = [int((x + 0.5) * 64 / width) for x in range(width)]
        assert np.array_equal(predicted[i], labels[i][np.ix_(rows, cols)])


def test_probabilities_model_gives_the_argmax_of_its_resized_probabilities(
        probabilities_onnx):
    images = _images(SIZES, seed=6)
    with Segmenter.open(probabilities_onnx) as seg:
        assert seg.logits_output == "probabilities"
        labels, scores = seg.predict(images), seg.predict_scores(images)
    for image, label_map, probabilities in zip(images, labels, scores, strict=True):
        assert probabilities.shape == (*image.shape[:2], 4)
        assert np.allclose(probabilities.sum(-1), 1, atol=1e-5)  # bilinear keeps the sum
        clear = _tie_free(probabilities)
        assert np.array_equal(label_map[clear], probabilities.argmax(-1)[clear])
    assert any(np.unique(m).size > 1 for m in labels)


def test_in_graph_labels_used_at_model_size_logits_otherwise(segmenter):
    assert segmenter.outputs_for([(64, 64), (64, 64)]) == ["labels"]
    assert segmenter.outputs_for([(64, 64), (65, 64)]) == ["logits"]
    images = _images([(64, 64)] * 2, seed=9)
    in_graph = segmenter.predict(images)
    from_logits = [segmenter.predict([im, np.zeros((10, 10, 3), np.uint8)])[0] for im in images]
    for a, b in zip(in_graph, from_logits, strict=True):
        assert np.array_equal(a, b)


def test_input_forms(segmenter):
    images = _images([(50, 70)] * 3)
    single = segmenter.predict(images[0])
    assert isinstance(single, np.ndarray) and single.shape == (50, 70)
    as_list = segmenter.predict(images)
    as_array = segmenter.predict(np.stack(images))
    assert isinstance(as_list, list) and len(as_array) == 3
    assert all(np.array_equal(a, b) for a, b in zip(as_list, as_array, strict=True))
    assert np.array_equal(single, as_list[0])


def test_max_batch_chunks_predictions(nhwc_onnx, segmenter):
    images = _images([(64, 64), (80, 40)] * 3)
    with Segmenter.open(nhwc_onnx, max_batch=2) as small:
        assert small.max_batch == 2
        chunked = small.predict(images)
    whole = segmenter.predict(images)
    assert all(np.array_equal(a, b) for a, b in zip(chunked, whole, strict=True))


def test_run_matches_bare_session(segmenter, nhwc_onnx):
    batch = segmenter.prepare(_images([(64, 64), (20, 90)]))
    assert batch.shape == segmenter.input_shape(2) == (2, 64, 64, 3)
    outputs = segmenter.run(batch)
    session = ort.InferenceSession(str(nhwc_onnx), providers=["CPUExecutionProvider"])
    logits, labels = session.run(["logits", "labels"], {INPUT_NAME: batch})
    assert np.array_equal(outputs["logits"], logits)
    assert np.array_equal(outputs["labels"], labels)


class _DLPackOnly:
    """A tensor that offers only the DLPack protocol (like a JAX or a PyTorch tensor)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_run_device_writes_caller_buffers_in_place(segmenter):
    batch = segmenter.prepare(_images([(64, 64)] * 2, seed=11))
    expected = segmenter.run(batch)
    labels = np.full(segmenter.output_shape("labels", 2), -1, np.int32)
    logits = np.zeros(segmenter.output_shape("logits", 2), np.float32)
    segmenter.run_device(batch, {"labels": labels, "logits": _DLPackOnly(logits)})
    assert np.array_equal(labels, expected["labels"])
    assert np.array_equal(logits, expected["logits"])
    # raw addresses, as a C or C++ host passes them
    raw = np.zeros_like(labels)
    segmenter.run_device(batch.ctypes.data, {"labels": raw.ctypes.data}, batch=2)
    assert np.array_equal(raw, expected["labels"])


def test_concurrent_calls_equal_serial(segmenter):
    images = _images([(64, 64), (48, 80), (90, 30), (64, 64)], seed=21)
    calls = [[images[(t + k) % 4], images[(t + 2 * k) % 4]] for t in range(8) for k in range(4)]
    serial = [segmenter.predict(c) for c in calls]
    failures: list[str] = []

    def worker(thread: int) -> None:
        for n in range(50):
            index = (thread * 4 + n) % len(calls)
            got = segmenter.predict(calls[index])
            if not all(np.array_equal(a, b) for a, b in zip(got, serial[index], strict=True)):
                failures.append(f"thread {thread} call {n}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_describe_and_close(nhwc_onnx):
    seg = Segmenter.open(nhwc_onnx, providers=["cpu"], threads=1)
    info = seg.describe()
    assert info["backend"] == "onnxruntime" and info["providers"] == ["CPUExecutionProvider"]
    assert info["input_size"] == [64, 64] and info["outputs"] == ["logits", "labels"]
    seg.close()
    from ocr_deploy.errors import BadInputError

    with pytest.raises(BadInputError, match="closed"):
        seg.predict(_images([(64, 64)])[0])


def test_runtime_imports_and_predicts_without_tensorflow(nhwc_onnx):
    code = ("import sys, numpy as np; from ocr_deploy.runtime import Segmenter; "
            f"s = Segmenter.open({str(nhwc_onnx)!r}); "
            "s.predict([np.zeros((64, 64, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras', 'tf2onnx')]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_boundary_only_blending_equals_full_resize():
    from ocr_deploy.contract import postprocess

    rng = np.random.default_rng(2)
    smooth = np.stack([np.asarray(Image.fromarray(rng.normal(size=(3, 4)).astype(np.float32), "F")
                                  .resize((80, 60), Image.BILINEAR)) for _ in range(5)], -1)
    noise = rng.normal(size=(30, 40, 5)).astype(np.float32)
    for scores in (smooth, noise):  # few boundary pixels (blended one by one) / many (rows)
        for height, width in [(150, 201), (13, 17), (60, 80), (121, 9)]:
            expected = postprocess.resize_scores(scores, height, width).argmax(-1)
            got = postprocess.labels_from_scores(scores, height, width)
            assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_built_provider_options_reach_the_gpu_providers(tmp_path):
    from ocr_deploy.backends.onnxruntime.build import provider_options
    from ocr_deploy.onnxruntime_env import choose_providers

    built = provider_options(tmp_path / "m_fp16.onnx")
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = dict(p if isinstance(p, tuple) else (p, None)
                  for p in choose_providers(None, available, 1, built))
    trt = chosen["TensorrtExecutionProvider"]
    # the precision is in the ONNX: the provider's FP16/INT8 switches (weak typing) stay off
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is False
    assert trt["trt_engine_cache_enable"] is True and chosen["CPUExecutionProvider"] is None
    assert choose_providers(None, ["CPUExecutionProvider"], 0, built) == ["CPUExecutionProvider"]


def test_onnx_artifact_with_sidecar_opens_on_cpu(tmp_path, nhwc_onnx):
    from ocr_deploy.builder.pipeline import BuildRequest, build

    artifact = build(BuildRequest(onnx=nhwc_onnx, precision="fp32", backend="onnxruntime",
                                  output=tmp_path / "m.onnx", quiet=True)).artifact
    with Segmenter.open(artifact) as seg:
        assert seg.describe()["providers"] == ["CPUExecutionProvider"]
        assert seg.predict(_images([(64, 64)])[0]).shape == (64, 64)


def test_a_provider_onnxruntime_dropped_is_reported():
    from ocr_deploy.onnxruntime_env import warn_dropped

    with pytest.warns(UserWarning, match="could not use TensorrtExecutionProvider"):
        warn_dropped([("TensorrtExecutionProvider", {}), "CPUExecutionProvider"],
                      ["CPUExecutionProvider"])
