"""Cross-builds: ``--backend tensorrt --emit-onnx`` here (no TensorRT), then the device-side
build of the emitted graph.

The emit half runs for real (ONNX Runtime is the proxy verdict). The device half runs on
the SIMULATED CUDA runtime with the TensorRT STAND-IN, and with the TensorRT engine build
call STUBBED (``engine.build_engine`` returns no engine) and the engine runner STUBBED (the
emitted graph on ONNX Runtime stands for the engine): they check that ocr-deploy's device
path recognises the graph, skips calibration and judges what it built — not that TensorRT
builds or runs it (``tests/test_tensorrt_build.py``, ``-m gpu``, does that on a GPU).
"""

from __future__ import annotations

import json

import cuda_sim
import onnx
import pytest
import tensorrt_standin

from ocr_deploy.backends.tensorrt.options import TensorRTOptions
from ocr_deploy.builder.cli import main
from ocr_deploy.builder.pipeline import BuildRequest, build
from ocr_deploy.contract.metadata import read_metadata
from ocr_deploy.sidecar import read_sidecar


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    from ocr_deploy.demo.synthetic import write_samples

    folder = tmp_path_factory.mktemp("calib")
    write_samples(folder, 8, height=64, width=64)
    return folder


def _emit(source, output, precision, calib=None, **request):
    return build(BuildRequest(
        onnx=source, precision=precision, backend="tensorrt", calib_dir=calib,
        quantize_attention=True, quiet=True,
        backend_options={"tensorrt": TensorRTOptions(emit_onnx=output)}, **request))


def test_emit_int8_writes_the_tensorrt_graph_and_its_provenance(nhwc_onnx, calib, tmp_path):
    output = tmp_path / "m_trt_int8.onnx"
    result = _emit(nhwc_onnx, output, "int8", calib)
    assert result.artifact == output and result.sidecar.is_file()
    model = onnx.load(str(output))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    scales = {n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert {t.data_type for t in model.graph.initializer if t.name in scales} == {
        onnx.TensorProto.FLOAT16}  # the FP16 base of a strongly typed TensorRT network
    meta = read_metadata(output)
    assert meta.precision == "int8"
    assert meta.build["cross_build"]["emitted_for"] == "tensorrt"
    assert meta.build["placement"]["name"] == "tensorrt"
    assert meta.build["placement"]["quantized_tensors"]["op_inputs"]
    assert meta.build["calibration"]["samples"] == 8
    sidecar = read_sidecar(output)
    assert "proxy" in sidecar["cross_build"]["verified_on"]
    assert sidecar["verification"]["accuracy"]["runner"]["backend"] == "onnxruntime"
    assert sidecar["verification"]["met_budget"]


def test_emit_needs_no_tensorrt_and_refuses_o(nhwc_onnx, tmp_path, capsys):
    code = main([str(nhwc_onnx), "--backend", "tensorrt", "--fp16", "--emit-onnx",
                 str(tmp_path / "a.onnx"), "-o", str(tmp_path / "b.onnx")])
    assert code == 2 and "-o as well" in capsys.readouterr().err
    code = main([str(nhwc_onnx), "--fp16", "--emit-onnx", str(tmp_path / "a.onnx")])
    assert code == 2 and "add --backend tensorrt" in capsys.readouterr().err
    code = main([str(nhwc_onnx), "--backend", "tensorrt", "--fp16", "--emit-onnx",
                 str(tmp_path / "m.onnx"), "--json", "--no-verify"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["cross_build"]["emitted_for"] == "tensorrt"


def test_emit_end_to_end_keeps_tensorrt_forms(nhwc_onnx, tmp_path):
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.contract.image_sizes import ImageSizes

    output = tmp_path / "e2e.onnx"
    _emit(nhwc_onnx, output, "fp16", end_to_end=EndToEndRequest(ImageSizes.fixed(48, 80)))
    meta = read_metadata(output)
    assert meta.end_to_end["forms"]["labels"] == "dense"  # TensorRT's, not ONNX Runtime's
    assert meta.build["cross_build"]["emitted_for"] == "tensorrt"


def test_precision_is_required_for_an_ordinary_build(nhwc_onnx, tmp_path, capsys):
    code = main([str(nhwc_onnx), "--backend", "onnxruntime", "-o", str(tmp_path / "m.onnx")])
    assert code == 2 and "one of --fp32, --fp16, --int8" in capsys.readouterr().err


@pytest.fixture
def device(monkeypatch):
    """STUBS on the simulated CUDA runtime with the TensorRT stand-in: ``build_engine``
    records what it was given and returns a placeholder plan; the "engine" runs as the
    emitted graph on ONNX Runtime CPU."""
    from ocr_deploy.backends.onnxruntime import OnnxRuntime
    from ocr_deploy.backends.tensorrt import TensorRT, engine

    given = {}

    def build_engine(spec, progress=None):
        given["spec"] = spec
        return engine.BuiltEngine(b"stub plan", None, [], layers=1)

    def open_runner(self, path, facts, device_id=0, cuda_graph=False):
        return OnnxRuntime.open_runner(self, given["onnx"], None, providers=["cpu"])

    monkeypatch.setattr(engine, "build_engine", build_engine)
    monkeypatch.setattr(TensorRT, "open_runner", open_runner)
    with cuda_sim.simulated(), tensorrt_standin.installed():
        yield given


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_simulated_device_build_of_the_emitted_graph_skips_calibration(
        nhwc_onnx, calib, tmp_path, device, capsys, precision):
    """STUBBED TensorRT build: the emitted graph is recognised, built as it is (the bytes
    handed to the engine build are the emitted graph's), without calibration, and judged."""
    emitted = tmp_path / f"m_trt_{precision}.onnx"
    _emit(nhwc_onnx, emitted, precision, calib)
    device["onnx"] = emitted
    engine_path = tmp_path / "m.engine"
    code = main([str(emitted), "--backend", "tensorrt", "--calib-dir", str(calib),
                 "-o", str(engine_path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads(captured.out)
    assert "calibrating" not in captured.err and "--calib-dir: not used" in captured.err
    given = onnx.load_from_string(device["spec"].onnx_bytes)
    source = onnx.load(str(emitted))
    assert [n.op_type for n in given.graph.node] == [n.op_type for n in source.graph.node]
    assert info["precision"] == precision and info["backend"] == "tensorrt"
    assert info["cross_build"]["built_from"] == str(emitted)
    assert info["verification"]["reference"].startswith("the emitted graph")
    assert "synthetic" in info["verification"]["data"]  # no --val-dir: synthetic images
    assert info["verification"]["met_budget"]
    if precision == "int8":
        assert info["calibration"]["samples"] == 8  # provenance carried from the emit
        assert info["placement"]["quantized_tensors"]
    assert read_sidecar(engine_path)["metadata"]["precision"] == precision


def test_simulated_device_build_refuses_another_precision(nhwc_onnx, tmp_path, device,
                                                         capsys):
    emitted = tmp_path / "m.onnx"
    _emit(nhwc_onnx, emitted, "fp16")
    code = main([str(emitted), "--backend", "tensorrt", "--int8", "-o",
                 str(tmp_path / "m.engine")])
    assert code == 2 and "--fp16 (the emitted graph's precision)" in capsys.readouterr().err
    assert "spec" not in device


@pytest.mark.gpu
def test_device_build_of_an_emitted_graph_on_tensorrt(nhwc_onnx, calib, tmp_path):
    """The real thing: needs TensorRT and a GPU (skips here)."""
    from ocr_deploy.backends.tensorrt.library import availability

    ok, reason = availability()
    if not ok:
        pytest.skip(f"TensorRT engine build: {reason}")
    emitted = tmp_path / "m.onnx"
    _emit(nhwc_onnx, emitted, "int8", calib)
    result = build(BuildRequest(onnx=emitted, precision=None, backend="tensorrt",
                                output=tmp_path / "m.engine", quiet=True))
    assert result.info["verification"]["met_budget"]
    assert result.info["verification"]["accuracy"]["runner"]["backend"] == "tensorrt"


def test_simulated_device_build_of_an_emitted_end_to_end_graph(nhwc_onnx, tmp_path, device,
                                                               capsys):
    """STUBBED TensorRT build of an emitted end-to-end graph: its own image profile, no new
    wrap, the verdict on camera-size synthetic images against the emitted graph."""
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.contract.image_sizes import ImageSizes

    emitted = tmp_path / "e2e.onnx"
    _emit(nhwc_onnx, emitted, "fp16", end_to_end=EndToEndRequest(ImageSizes.fixed(48, 80)))
    device["onnx"] = emitted
    code = main([str(emitted), "--backend", "tensorrt", "-o", str(tmp_path / "e2e.engine"),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = json.loads(captured.out)
    (shapes,) = device["spec"].profiles.values()
    assert [tuple(shape[1:]) for shape in shapes] == [(48, 80, 3)] * 3
    assert "48x80" in info["verification"]["data"] and info["verification"]["met_budget"]
    assert "wrapped end to end" not in captured.err
