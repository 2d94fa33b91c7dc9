"""Caller-owned buffers for ``run_device``: outputs must be writable (read-only arrays and
memmaps are refused before anything runs), raw addresses with a size are checked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ocr_deploy.errors import BadInputError


def _batch(segmenter, count: int = 2) -> np.ndarray:
    rng = np.random.default_rng(3)
    return segmenter.prepare([rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(count)])


def test_read_only_output_arrays_are_refused(segmenter):
    batch = _batch(segmenter)
    labels = np.full(segmenter.output_shape("labels", 2), -1, np.int32)
    labels.flags.writeable = False
    with pytest.raises(BadInputError, match=r"output 'labels' as writable memory .*found a "
                       r"read-only buffer") as info:
        segmenter.run_device(batch, {"labels": labels})
    assert info.value.exit_code == 2
    assert (labels == -1).all()  # untouched
    frozen = batch.copy()
    frozen.flags.writeable = False  # a read-only input is fine: it is only read
    out = np.zeros(segmenter.output_shape("labels", 2), np.int32)
    segmenter.run_device(frozen, {"labels": out})
    assert np.array_equal(out, segmenter.run(batch)["labels"])


class _CudaLike:
    """An object exposing host memory through ``__cuda_array_interface__`` (read-only)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": array.dtype.str,
                                         "data": (array.ctypes.data, True), "version": 3}


def test_read_only_cuda_array_interface_outputs_are_refused(segmenter):
    out = _CudaLike(np.zeros(segmenter.output_shape("labels", 2), np.int32))
    with pytest.raises(BadInputError, match="writable memory"):
        segmenter.run_device(_batch(segmenter), {"labels": out})


def test_read_only_memmap_output_is_refused_not_a_crash(nhwc_onnx, tmp_path):
    script = f"""
import numpy as np
from ocr_deploy.errors import BadInputError
from ocr_deploy.runtime import Segmenter
np.zeros((2, 64, 64), np.int32).tofile({str(tmp_path / "out.bin")!r})
with Segmenter.open({str(nhwc_onnx)!r}) as seg:
    batch = seg.prepare([np.zeros((64, 64, 3), np.uint8)] * 2)
    out = np.memmap({str(tmp_path / "out.bin")!r}, np.int32, "r", shape=(2, 64, 64))
    try:
        seg.run_device(batch, {{"labels": out}})
    except BadInputError as exc:
        print(exc.one_line())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr  # before: killed by SIGSEGV
    assert "found a read-only buffer" in run.stdout


def test_raw_addresses_with_a_size_are_checked(segmenter):
    batch = _batch(segmenter)
    expected = segmenter.run(batch)["labels"]
    out = np.zeros(segmenter.output_shape("labels", 2), np.int32)
    small = np.zeros(segmenter.output_shape("labels", 1), np.int32)  # room for one image only
    with pytest.raises(BadInputError, match=r"a buffer of at least 32768 bytes for output "
                       r"'labels' \(\[2, 64, 64\] of int32\), found 16384 bytes"):
        segmenter.run_device((batch.ctypes.data, batch.nbytes),
                             {"labels": (small.ctypes.data, small.nbytes)}, batch=2)
    with pytest.raises(BadInputError, match=r"at least \d+ bytes for the input"):
        segmenter.run_device((batch.ctypes.data, batch.nbytes // 2),
                             {"labels": (out.ctypes.data, out.nbytes)}, batch=2)
    segmenter.run_device((batch.ctypes.data, batch.nbytes), {"labels": (out.ctypes.data,
                                                                        out.nbytes)}, batch=2)
    assert np.array_equal(out, expected)
    assert (small == 0).all()


class _CudaProducer:
    """A CUDA producer over DLPack, with a CUDA array interface too when ``cai_stream`` is
    given (as PyTorch and CuPy have both), that records what the consumer asked for. Its
    data is host memory (no GPU here): this checks the protocol handling only."""

    def __init__(self, array, cai_stream=None, read_only=False, refuse=None):
        self.array, self.asked, self.refuse = array, [], refuse
        if cai_stream is not None:
            self.__cuda_array_interface__ = {
                "data": (array.ctypes.data, read_only), "shape": array.shape,
                "typestr": array.dtype.str, "strides": None, "version": 3,
                "stream": cai_stream}

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA

    def __dlpack__(self, stream=None):
        self.asked.append(stream)
        if self.refuse:
            raise self.refuse
        return self.array.__dlpack__()


def test_dlpack_producer_is_given_the_consumer_stream():
    from ocr_deploy.backends.tensors import tensor_ref

    producer = _CudaProducer(np.zeros((1, 4), np.float32))
    tensor_ref(producer, "x", (1, 4), np.float32, "cuda", stream=7)
    tensor_ref(producer, "x", (1, 4), np.float32, "cuda")
    tensor_ref(producer, "x", (1, 4), np.float32, "cuda", stream=0)
    assert producer.asked == [7, None, 1]  # 0, the legacy default stream, is DLPack's 1


def test_cuda_memory_with_both_protocols_goes_through_dlpack(monkeypatch):
    """PyTorch's array interface (v2) carries no stream: DLPack's handshake orders the
    producer's work before ours, so it is preferred; the interface's read-only flag still
    counts for outputs."""
    from ocr_deploy import cuda
    from ocr_deploy.backends.tensors import tensor_ref

    waited = []
    monkeypatch.setattr(cuda, "synchronize_stream", waited.append)
    array = np.zeros((1, 4), np.float32)
    producer = _CudaProducer(array, cai_stream=5)
    tensor_ref(producer, "x", (1, 4), np.float32, "cuda", stream=9)
    assert producer.asked == [9] and waited == []
    frozen = _CudaProducer(array, cai_stream=5, read_only=True)
    with pytest.raises(BadInputError, match="writable memory"):
        tensor_ref(frozen, "out", (1, 4), np.float32, "cuda", writable=True, stream=9)


def test_a_producer_refusing_dlpack_export_is_a_clear_error():
    from ocr_deploy.backends.tensors import tensor_ref

    refusing = _CudaProducer(np.zeros((1, 4), np.float32), refuse=BufferError(
        "Can't export tensors that require gradient, use tensor.detach()"))
    with pytest.raises(BadInputError, match=r"expected the input that its producer exports "
                       r"over DLPack, found a refusal \(BufferError: Can't export tensors "
                       r"that require gradient"):
        tensor_ref(refusing, "the input", (1, 4), np.float32, "cuda", stream=9)


class _ArrayInterfaceOnly:
    """A producer with only ``__cuda_array_interface__`` v3 (host memory, see above)."""

    def __init__(self, array, stream):
        self.__cuda_array_interface__ = {"data": (array.ctypes.data, False),
                                         "shape": array.shape, "typestr": array.dtype.str,
                                         "strides": None, "version": 3, "stream": stream}


def test_cuda_array_interface_stream_is_synchronised_first(monkeypatch):
    from ocr_deploy import cuda
    from ocr_deploy.backends.tensors import tensor_ref

    waited = []
    monkeypatch.setattr(cuda, "synchronize_stream", waited.append)
    array = np.zeros((1, 4), np.float32)
    tensor_ref(_ArrayInterfaceOnly(array, stream=5), "x", (1, 4), np.float32, "cuda", stream=9)
    tensor_ref(_ArrayInterfaceOnly(array, stream=9), "x", (1, 4), np.float32, "cuda", stream=9)
    assert waited == [5]  # the producer's stream, and only when it is not ours
