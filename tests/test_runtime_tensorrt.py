"""The TensorRT backend on a real GPU: skipped, with the reason, where TensorRT, cuda-python
or a GPU is missing (the development machines and CI have none of them)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sidecars import write_sidecar

from ocr_deploy.errors import BadInputError

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt():
    module = pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an "
                                 "NVIDIA GPU machine: pip install 'ocr-deploy[tensorrt]')")
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from ocr_deploy import cuda

    try:
        cuda.device_info(0)
    except cuda.CudaError as exc:
        pytest.skip(f"no usable GPU: {exc}")
    return module


@pytest.fixture(scope="module")
def engine(trt, nhwc_onnx, tmp_path_factory):
    """An FP32 engine (batch 1..4) of the NHWC export, built by ocr-build-engine's library."""
    from ocr_deploy.backends.tensorrt.options import TensorRTOptions
    from ocr_deploy.builder.pipeline import BuildRequest, build

    path = tmp_path_factory.mktemp("engine") / "nhwc.engine"
    build(BuildRequest(onnx=nhwc_onnx, precision="fp32", backend="tensorrt", output=path,
                       verify=False, quiet=True,
                       backend_options={"tensorrt": TensorRTOptions(batch=(1, 2, 4))}))
    return path, nhwc_onnx


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64 + 8 * i, 64 + 4 * i, 3), dtype=np.uint8) for i in range(n)]


def test_engine_matches_onnxruntime(engine):
    from ocr_deploy.runtime import Segmenter

    path, onnx_path = engine
    images = _images(6)
    with Segmenter.open(onnx_path, providers=["cpu"]) as reference, Segmenter.open(path) as seg:
        assert seg.runner.name == "tensorrt" and seg.max_batch == 4
        want, got = reference.predict_scores(images), seg.predict_scores(images)
        for a, b in zip(want, got, strict=True):
            assert np.abs(a - b).max() <= 1e-2 * np.abs(a).max()  # TF32 may be on for FP32
        agree = np.mean([np.mean(a == b) for a, b in
                         zip(reference.predict(images), seg.predict(images), strict=True)])
        assert agree >= 0.99


def test_cuda_graph_threads_and_device_memory(engine):
    from ocr_deploy import cuda
    from ocr_deploy.runtime import Segmenter

    path, _ = engine
    images = _images(4, seed=1)
    with Segmenter.open(path) as plain, Segmenter.open(path, cuda_graph=True) as graphed:
        serial = plain.predict(images)
        for _ in range(3):  # capture, then replay
            assert all(np.array_equal(a, b) for a, b in zip(graphed.predict(images), serial,
                                                            strict=True))
        failures = []

        def worker():
            for _ in range(10):
                if not all(np.array_equal(a, b) for a, b in zip(plain.predict(images), serial,
                                                                strict=True)):
                    failures.append(1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures

        batch = plain.prepare(images[:2])
        expected = plain.run(batch, ["labels"])["labels"]
        device_in, device_out = cuda.DeviceBuffer(), cuda.DeviceBuffer()
        device_in.ensure(batch.nbytes)
        device_out.ensure(expected.nbytes)
        stream = cuda.Stream()
        cuda.copy_async(device_in.ptr, batch.ctypes.data, batch.nbytes, True, stream.handle)
        plain.run_device(device_in.ptr, {"labels": device_out.ptr}, batch=2,
                         stream=stream.handle)
        got = np.empty_like(expected)
        cuda.copy_async(got.ctypes.data, device_out.ptr, got.nbytes, False, stream.handle)
        stream.synchronize()
        assert np.array_equal(got, expected)
        device_in.free()
        device_out.free()
        stream.destroy()
        with pytest.raises(BadInputError, match="CUDA device memory"):
            plain.run_device(batch, {"labels": np.empty_like(expected)})


def test_engine_from_another_tensorrt_is_refused(engine, tmp_path):
    from ocr_deploy.runtime import Segmenter
    from ocr_deploy.sidecar import read_sidecar

    path, _ = engine
    copy = tmp_path / "old.engine"
    copy.write_bytes(path.read_bytes())
    write_sidecar(copy, {**read_sidecar(path), "tensorrt_version": "8.6.1"})
    with pytest.raises(BadInputError, match=r"built with TensorRT 8\.6\.1"):
        Segmenter.open(copy)
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(b"\0" * 1024)
    write_sidecar(garbage, read_sidecar(path))
    with pytest.raises(BadInputError, match="deserialisation failed"):
        Segmenter.open(garbage)


def test_a_static_profile_engine_predicts_any_number_of_images(trt, nhwc_onnx, tmp_path):
    """An engine built with the static profile 2:2:2 gives the labels the ONNX gives for 1,
    2 and 3 images (the runner pads a short batch and splits a long one), and ocr-bench
    times only the batch it takes."""
    from ocr_deploy.backends.tensorrt.options import TensorRTOptions
    from ocr_deploy.bench.runner import benchmark_artifact
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.runtime import Segmenter

    path = tmp_path / "static2.engine"
    build(BuildRequest(onnx=nhwc_onnx, precision="fp32", backend="tensorrt", output=path,
                       quiet=True, backend_options={"tensorrt": TensorRTOptions(
                           batch=(2, 2, 2))}))
    with Segmenter.open(nhwc_onnx, providers=["cpu"]) as reference, Segmenter.open(path) as seg:
        assert (seg.runner.min_batch, seg.runner.max_batch) == (2, 2)
        for count in (1, 2, 3):
            images = _images(count, seed=count)
            agree = np.mean([np.mean(a == b) for a, b in zip(
                reference.predict(images), seg.predict(images), strict=True)])
            assert agree >= 0.99, count
    result = benchmark_artifact(path, [1, 2, 3], warmup=0, iterations=1)
    assert [b["batch"] for b in result["batches"]] == [2]
    assert [s["batch"] for s in result["skipped_batches"]] == [1, 3]
