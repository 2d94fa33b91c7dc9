"""Bad input to the runtime: each case is one clear OcrDeployError, never a crash."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from sidecars import write_sidecar

from ocr_deploy.backends.tensorrt.runner import check_compatibility
from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.errors import BadInputError, OcrDeployError, PairMismatchError
from ocr_deploy.runtime import Segmenter


def _one_line(exc: OcrDeployError) -> str:
    text = exc.one_line()
    assert "\n" not in text
    return text


@pytest.mark.parametrize("images, match", [
    (np.zeros((64, 64, 3), np.float32), "dtype uint8"),
    (np.zeros((64, 64), np.uint8), r"\[H,W,3\] RGB"),
    (np.zeros((64, 64, 4), np.uint8), r"found shape \[64, 64, 4\]"),
    (np.zeros((3, 64, 64), np.uint8), r"found shape \[3, 64, 64\]"),
    (np.zeros((0, 10, 3), np.uint8), "with pixels"),
    ([], "empty batch"),
    ([[1, 2, 3]], "as a NumPy array"),
    ("image.png", "a str"),
    (np.zeros((1, 2, 3, 4, 5), np.uint8), r"shape \[1, 2, 3, 4, 5\]"),
])
def test_bad_images(segmenter, images, match):
    for call in (segmenter.predict, segmenter.predict_scores, segmenter.prepare):
        with pytest.raises(BadInputError, match=match) as info:
            call(images)
        _one_line(info.value)


def test_bad_prepared_batches_and_buffers(segmenter):
    good = segmenter.prepare([np.zeros((64, 64, 3), np.uint8)])
    for batch, match in [(good.astype(np.float64), "float32"), (good[:, :32], r"\[1, 64, 64, 3\]"),
                         (good[0], "4-D"), (good.tolist(), "a list")]:
        with pytest.raises(BadInputError, match=match):
            segmenter.run(batch)
    with pytest.raises(BadInputError, match="outputs among"):
        segmenter.run(good, ["aux_logits"])
    with pytest.raises(BadInputError, match=r"shaped \[1, 64, 64\] of int32"):
        segmenter.run_device(good, {"labels": np.zeros((1, 64, 64), np.int64)})
    with pytest.raises(BadInputError, match="C-contiguous"):
        segmenter.run_device(good, {"labels": np.zeros((1, 64, 128), np.int32)[:, :, ::2]})
    with pytest.raises(BadInputError, match="batch= with raw addresses"):
        segmenter.run_device(good.ctypes.data, {"labels": 1234})
    with pytest.raises(BadInputError, match="non-null address"):
        segmenter.run_device(good, {"labels": 0})
    with pytest.raises(BadInputError, match=r"host \(CPU\) memory"):
        segmenter.run_device(good.ctypes.data, {"labels": 1234}, batch=1, device="cuda")
    with pytest.raises(BadInputError, match="at least one output"):
        segmenter.run_device(good, {})


def _write_foreign_onnx(path):
    image = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["b", 8, 8, 3])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 8, 8, 3])
    graph = helper.make_graph([helper.make_node("Relu", [INPUT_NAME], ["out"])], "g", [image],
                              [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), path)


def test_bad_artifacts(tmp_path, nhwc_onnx):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(nhwc_onnx.read_bytes()[: nhwc_onnx.stat().st_size // 2])
    foreign = tmp_path / "foreign.onnx"
    _write_foreign_onnx(foreign)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    keras_h5 = tmp_path / "model.h5"  # what a Keras file is to the runtime: its suffix
    keras_h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    cases = [(corrupt, "that ONNX Runtime can load"), (truncated, "that ONNX Runtime can load"),
             (foreign, "no ocr_deploy metadata"), (empty, "an empty file"),
             (tmp_path / "missing.onnx", "no such file"), (other, "'.pt'"),
             (keras_h5, "export it first with ocr-export")]
    for path, match in cases:
        with pytest.raises(BadInputError, match=match) as info:
            Segmenter.open(path)
        assert str(path) in _one_line(info.value)


def test_bad_open_options(nhwc_onnx):
    with pytest.raises(BadInputError, match="build one with ocr-build-engine --backend tensorrt"):
        Segmenter.open(nhwc_onnx, backend="tensorrt")
    with pytest.raises(BadInputError, match="a backend among"):
        Segmenter.open(nhwc_onnx, backend="openvino")
    with pytest.raises(BadInputError, match="'NoSuchExecutionProvider'"):
        Segmenter.open(nhwc_onnx, providers=["NoSuchExecutionProvider"])
    with pytest.raises(BadInputError, match="max_batch >= 1"):
        Segmenter.open(nhwc_onnx, max_batch=0)


def test_labels_only_model_has_no_scores(nchw_onnx):
    with Segmenter.open(nchw_onnx) as seg, \
            pytest.raises(BadInputError, match="logits output"):
        seg.predict_scores(np.zeros((64, 64, 3), np.uint8))


def _fake_engine(tmp_path, nhwc_onnx, **sidecar):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really a TensorRT plan")
    write_sidecar(engine, {"metadata": read_metadata(nhwc_onnx).__dict__, **sidecar})
    return engine


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: the missing-TensorRT error cannot happen")
def test_engine_without_tensorrt_says_so(tmp_path, nhwc_onnx):
    engine = _fake_engine(tmp_path, nhwc_onnx, tensorrt_version="10.13.0")
    with pytest.raises(BadInputError, match=r"expected TensorRT .*not installed") as info:
        Segmenter.open(engine)
    assert "pip install 'ocr-deploy[tensorrt]'" in _one_line(info.value)


def test_engine_for_another_tensorrt_or_gpu_is_refused():
    here = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    built = {"tensorrt_version": "10.8.0.43", "gpu_name": "Orin", "compute_capability": "8.7"}
    with pytest.raises(BadInputError, match=r"TensorRT 11\.4\.0.*TensorRT 10\.8\.0\.43 on Orin"):
        check_compatibility("m.engine", built, "11.4.0.12", here)
    with pytest.raises(BadInputError, match=r"H100.*9\.0.*Orin \(compute capability 8\.7\)"):
        check_compatibility("m.engine", {**built, "tensorrt_version": "11.4.0.7"},
                            "11.4.0.12", here)
    with pytest.warns(UserWarning, match="rebuild it here"):
        check_compatibility("m.engine", {"tensorrt_version": "11.4.0", "gpu_name": "H200",
                                         "compute_capability": [9, 0]}, "11.4.0.12", here)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatibility("m.engine", {}, "11.4.0.12", here)  # nothing recorded: TensorRT decides


def test_engine_sidecar_problems(tmp_path, nhwc_onnx, monkeypatch):
    import sys
    import types

    tensorrt = types.ModuleType("tensorrt")  # pretend: TensorRT 10.3 is installed
    tensorrt.__version__ = "10.3.0"
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(BadInputError, match=r"sidecar model\.engine\.json"):
        Segmenter.open(engine)
    (tmp_path / "model.engine.json").write_text(json.dumps({"tensorrt_version": "10.0"}))
    with pytest.raises(PairMismatchError, match="records its SHA-256"):  # not bound to it
        Segmenter.open(engine)
    write_sidecar(engine, {"tensorrt_version": "10.0"})
    with pytest.raises(BadInputError, match="under 'metadata'"):
        Segmenter.open(engine)


def test_cuda_calls_raise_naming_the_call():
    from ocr_deploy import cuda

    try:
        cuda.runtime_module()
    except BadInputError as exc:  # no cuda-python here: the TensorRT path says what to install
        assert "pip install 'ocr-deploy[tensorrt]'" in _one_line(exc)
        return
    with pytest.raises(cuda.CudaError, match=r"expected cudaSetDevice to succeed, found CUDA "
                                             r"error cudaError\w+ \(\d+\)"):
        cuda.cuda_call("cudaSetDevice", 10**6)  # no such device, with or without a GPU
