"""The backend registry, each backend's facts and options, and the TensorRT rules that can
be checked without TensorRT (profiles, DLA, typing, alignment, the shared logger's error
log, the Jetson pin). Hand-built ONNX models: no TensorFlow. Nothing here runs TensorRT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import tomllib
from onnx_models import small_segnet, small_segnet_metadata

from ocr_deploy import backends
from ocr_deploy.backends.options import changed_flags
from ocr_deploy.backends.tensorrt.build import resolve_options, weak_typing_flags
from ocr_deploy.backends.tensorrt.library import ErrorLog
from ocr_deploy.backends.tensorrt.options import TensorRTOptions
from ocr_deploy.contract.metadata import INPUT_NAME, write_metadata
from ocr_deploy.errors import BadInputError

ROOT = Path(__file__).resolve().parents[1]


def _model(batch: int | None = None) -> onnx.ModelProto:
    model = small_segnet()
    if batch is not None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return model


def test_registry_by_name_and_by_artifact(tmp_path):
    assert backends.CHOICES == ("auto", "onnxruntime", "tensorrt")
    assert backends.get("tensorrt").name == "tensorrt"
    for backend in backends.BACKENDS:
        for suffix in backend.suffixes:
            path = tmp_path / f"m{suffix}"
            path.write_bytes(b"x")
            assert backends.for_artifact(path) is backend
    with pytest.raises(BadInputError, match="a backend among tensorrt, onnxruntime"):
        backends.get("tflite")
    (tmp_path / "m.h5").write_bytes(b"x")
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name, match in (("m.h5", "export it first"), ("m.tflite", "a '.tflite' file"),
                        ("missing.engine", "no such file"), ("empty.onnx", "an empty file")):
        with pytest.raises(BadInputError, match=match):
            backends.for_artifact(tmp_path / name)
    assert backends.by_triton_platform() == {"tensorrt_plan": "tensorrt",
                                             "onnxruntime_onnx": "onnxruntime"}


def test_auto_falls_back_with_the_reason_and_explicit_tensorrt_is_refused():
    backend, why = backends.choose("auto")
    assert backend.name == "onnxruntime" and "tensorrt" in why and "ONNX Runtime" in why
    with pytest.raises(BadInputError, match="use --backend onnxruntime"):
        backends.choose("tensorrt")


def test_every_backend_declares_its_artifact_facts_and_flagged_options():
    flags = []
    for backend in backends.BACKENDS:
        assert backend.suffix == backend.suffixes[0] and backend.kind in ("onnx", "engine")
        assert backend.triton_platform and backend.triton_model_file
        assert backend.deepstream_model_key in ("onnx-file", "model-engine-file")
        options = backend.options_type()
        assert dataclasses.is_dataclass(options) and changed_flags(options) == []
        flags += [f.metadata["flag"] for f in dataclasses.fields(options)]
    assert len(flags) == len(set(flags))  # no backend reuses another's flag


def test_options_of_another_backend_are_reported_as_ignored(tmp_path):
    from ocr_deploy.builder.request import BuildRequest, ignored_options

    request = BuildRequest(onnx=tmp_path / "m.onnx", backend_options={
        "tensorrt": TensorRTOptions(workspace_mib=64, dla_core=0)})
    assert ignored_options(request, backends.get("onnxruntime")) == ["--workspace-mib",
                                                                      "--dla-core"]
    assert ignored_options(request, backends.get("tensorrt")) == []


def test_the_build_cli_takes_each_backend_group_and_default_from_the_library():
    from ocr_deploy.builder.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["m.onnx", "--fp16", "--batch-profile", "1:2:4", "--ort-optimization",
                              "basic"])
    assert args.tensorrt_batch == (1, 2, 4) and args.onnxruntime_optimization == "basic"
    defaults = parser.parse_args(["m.onnx", "--fp16"])
    assert defaults.tensorrt_batch is None and defaults.tensorrt_use_timing_cache
    assert "--workspace-mib" in parser.format_help()


def test_static_batch_sets_the_profile_and_a_contradicting_one_is_refused(tmp_path):
    notes = []
    resolved = resolve_options(TensorRTOptions(), _model(batch=1), tmp_path, notes.append)
    assert resolved.batch == (1, 1, 1) and "static batch 1" in notes[0]
    assert resolve_options(TensorRTOptions(batch=(2, 2, 2)), _model(batch=2), tmp_path,
                           notes.append).batch == (2, 2, 2)
    with pytest.raises(BadInputError, match="static batch of 1"):
        resolve_options(TensorRTOptions(batch=(1, 1, 8)), _model(batch=1), tmp_path, print)
    assert resolve_options(TensorRTOptions(), _model(), tmp_path, print).batch == (1, 1, 8)


def test_dla_needs_a_static_profile(tmp_path):
    dla = TensorRTOptions(dla_core=0)
    assert resolve_options(dla, _model(), tmp_path, print).batch == (1, 1, 1)
    assert resolve_options(dataclasses.replace(dla, batch=(4, 4, 4)), _model(), tmp_path,
                           print).batch == (4, 4, 4)
    with pytest.raises(BadInputError, match="a static profile N:N:N for DLA"):
        resolve_options(dataclasses.replace(dla, batch=(1, 4, 8)), _model(), tmp_path, print)


@pytest.mark.parametrize("options, precision, version, expected", [
    (TensorRTOptions(), "int8", "11.4.0", []),
    (TensorRTOptions(), "fp16", "10.3.0", []),
    (TensorRTOptions(builder_flags=True), "int8", "10.3.0", ["INT8", "FP16"]),
    (TensorRTOptions(dla_core=0, batch=(1, 1, 1)), "fp16", "10.3.0", ["FP16"]),
    (TensorRTOptions(dla_core=0, batch=(1, 1, 1)), "fp16", "11.4.1", []),
])
def test_typing_flags(options, precision, version, expected):
    assert weak_typing_flags(options, precision, version) == expected


@pytest.mark.parametrize("options, precision, version, match", [
    (TensorRTOptions(dla_core=0), "fp32", "10.3.0", "no FP32 kernels"),
    (TensorRTOptions(dla_core=0), "int8", "10.3.0", "implicit calibration"),
    (TensorRTOptions(dla_core=0), "int8", "11.4.1", "implicit calibration"),
    (TensorRTOptions(dla_core=0), "fp16", "11.2.0", "10.x .JetPack 6. or >= 11.4"),
    (TensorRTOptions(builder_flags=True), "fp16", "11.0.0", "only on TensorRT 10.x"),
])
def test_refused_typing(options, precision, version, match):
    with pytest.raises(BadInputError, match=match):
        weak_typing_flags(options, precision, version)


def test_engine_tensors_and_metadata_come_from_the_sidecar(tmp_path):
    tensorrt = backends.get("tensorrt")
    meta = small_segnet_metadata()
    sidecar = {"metadata": meta.__dict__, "profiles": [
        {"input": INPUT_NAME, "min": [1, 3, 16, 16], "opt": [2, 3, 16, 16],
         "max": [4, 3, 16, 16]}]}
    read = tensorrt.metadata(tmp_path / "m.engine", sidecar)
    tensors = tensorrt.tensors(tmp_path / "m.engine", read, sidecar)
    assert tensors.profile_batches == (1, 2, 4)
    assert [(t.name, t.dtype, t.shape) for t in tensors.inputs] == [
        (INPUT_NAME, "float32", [-1, 3, 16, 16])]
    assert [(t.name, t.shape) for t in tensors.outputs] == [("logits", [-1, 4, 16, 16])]
    with pytest.raises(BadInputError, match="optimisation profile"):
        tensorrt.tensors(tmp_path / "m.engine", read, {"metadata": meta.__dict__})
    with pytest.raises(BadInputError, match="under 'metadata'"):
        tensorrt.metadata(tmp_path / "m.engine", {})


def test_unaligned_caller_memory_is_refused():
    from ocr_deploy.backends.tensors import tensor_ref

    buffer = np.zeros(64 + 64, np.float32)
    start = buffer.ctypes.data
    aligned = buffer[(-start % 256) // 4:][:64]
    assert tensor_ref(aligned, "the input", (64,), np.float32, "cpu",
                      alignment=256).ptr % 256 == 0
    with pytest.raises(BadInputError, match="256-byte aligned address"):
        tensor_ref(aligned[1:33], "the input", (32,), np.float32, "cpu", alignment=256)
    with pytest.raises(BadInputError, match="256-byte aligned"):
        tensor_ref((aligned.ctypes.data + 4, 128), "the input", (32,), np.float32, "cuda",
                   alignment=256)


def test_error_log_reports_each_calls_own_errors():
    log = ErrorLog()
    log.record("old failure")
    mark = log.mark()
    assert log.since(mark) == ""
    for message in ("a", "b", "c"):
        log.record(message)
    assert log.since(mark) == "b; c"
    for index in range(ErrorLog.KEEP + 5):
        log.record(f"m{index}")
    assert len(log.messages) == ErrorLog.KEEP and log.since(log.mark() - 1).endswith(
        f"m{ErrorLog.KEEP + 4}")


def test_jetson_extra_matches_jetpack_6_cuda():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["jetson"] == ["cuda-python>=12.6,<12.7"]
    assert "cuda-python>=12.0,<13" in extras["tensorrt"]


def test_every_command_refuses_a_graph_that_computes_nothing(tmp_path, capsys):
    from ocr_deploy.builder.cli import main as build_main
    from ocr_deploy.packaging.cli import main as package_main

    model = _model()
    del model.graph.node[:]
    write_metadata(model, small_segnet_metadata())
    path = tmp_path / "empty_graph.onnx"
    onnx.save(model, str(path))
    assert build_main([str(path), "--fp16", "-o", str(tmp_path / "b.onnx"), "-q"]) == 2
    assert "computed by none" in capsys.readouterr().err
    assert package_main([str(path), "--triton", str(tmp_path / "repo")]) == 2
    assert "computed by none" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_package_refuses_an_input_shape_its_metadata_contradicts(tmp_path, capsys):
    from ocr_deploy.packaging.cli import main as package_main

    model = _model()
    meta = small_segnet_metadata()
    meta.input_height = 32  # the graph takes 16x16
    write_metadata(model, meta)
    path = tmp_path / "lying.onnx"
    onnx.save(model, str(path))
    assert package_main([str(path), "--triton", str(tmp_path / "repo")]) == 2
    assert "as its metadata says" in capsys.readouterr().err
