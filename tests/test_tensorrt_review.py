"""SIMULATED: the fourth desk review's findings (docs in ../shared/docs/TENSORRT.md, E2-E8)
checked on the simulated CUDA runtime (``cuda_sim``) with the TensorRT STAND-IN
(``tensorrt_standin``) or on plain data: ocr-deploy's own logic around TensorRT, not
evidence that TensorRT or CUDA behaves so (the ``-m gpu`` tests and
``benchmarks/gpu_check.py`` are for that)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cuda_sim
import numpy as np
import pytest
import tensorrt_standin
from tensorrt_standin import assert_expected, random_batch

from ocr_deploy.errors import BadInputError
from ocr_deploy.runtime import Segmenter

H = W = tensorrt_standin.SIM_SIZE
DEVICE = tensorrt_standin.SIM_DEVICE






def test_simulated_dla_engine_runs_without_cuda_graphs(sim, tmp_path):
    """E2: CUDA graphs and DLA offloading do not go together (trtexec turns them off)."""
    from sidecars import write_sidecar

    from ocr_deploy.sidecar import read_sidecar

    path = tensorrt_standin.write_engine(tmp_path / "dla.engine", H, W, 1, device=DEVICE)
    write_sidecar(path, {**read_sidecar(path), "dla_core": 0})
    with pytest.warns(UserWarning, match="DLA engine runs without CUDA graphs"):
        seg = Segmenter.open(path, cuda_graph=True)
    batch = random_batch(1)
    assert_expected(seg.run(batch), batch)
    assert not seg.runner._use_graphs and sim.live_graphs() == 0
    assert not any(call == "cudaGraphLaunch" for call, _ in sim.log)
    seg.close()


def test_dla_subgraphs_leave_myelin_out():
    """E3: Myelin's GPU subgraphs are named {ForeignNode[...]} too."""
    from ocr_deploy.backends.tensorrt.engine import dla_subgraph_count

    info = {"Layers": [
        {"Name": "{ForeignNode[conv1...relu4]}", "LayerType": "DLA"},
        {"Name": "{ForeignNode[/Resize...ArgMax]}", "LayerType": "Myelin"},
        {"Name": "{ForeignNode[conv7...conv9]}", "LayerType": "kDLA"},
        {"Name": "conv5 + relu5", "LayerType": "CaskConvolution"},
        "{ForeignNode[name only]}"]}
    assert dla_subgraph_count(info) == 2
    assert dla_subgraph_count({"Layers": []}) == 0


def test_stand_in_logger_keeps_the_builders_dla_block():
    """E3: the INFO block "Layers running on DLA" is kept; other INFO lines are not."""
    from ocr_deploy.backends.tensorrt.library import shared_logger

    with tensorrt_standin.installed() as trt:
        logger, info = shared_logger(), trt.ILogger.Severity.INFO
        mark = logger.dla_report.mark()
        for line in ("Detected 1 inputs", "--------------- Layers running on DLA:",
                     "{conv1,bn1}, {conv3,relu3}", "--------------- Layers running on GPU:",
                     "resize_0, argmax_1"):
            logger.log(info, line)
        assert logger.dla_report.all_since(mark) == ["{conv1,bn1}, {conv3,relu3}"]
        assert logger.errors.count == 0


def _e2e_range_meta(precision: str):
    from ocr_deploy.contract.metadata import ExportMetadata

    return ExportMetadata(input_height=16, input_width=16, num_classes=4, precision=precision,
                          end_to_end={"input": "image", "image": {
                              "min": [48, 64], "opt": [96, 128], "max": [96, 128]}})


@pytest.mark.parametrize("precision, refused", [("fp16", True), ("int8", True),
                                                ("fp32", False)])
def test_weak_typing_with_an_image_range_is_refused(precision, refused, monkeypatch):
    """E4: weakly typed FP16 could run the computed resize in FP16 (values past 65504)."""
    from ocr_deploy.backends.tensorrt.build import before_parse
    from ocr_deploy.backends.tensorrt.options import TensorRTOptions
    from ocr_deploy.contract.metadata import ExportMetadata

    meta = _e2e_range_meta(precision)
    monkeypatch.setattr(ExportMetadata, "image_sizes", lambda self: ((48, 64), (96, 128)))
    weak = TensorRTOptions(builder_flags=True)
    if refused:
        with pytest.raises(BadInputError, match="strong typing for an --image-range"):
            before_parse(b"", meta, weak, "10.3.0", print)
    else:
        before_parse(b"", meta, weak, "10.3.0", print)
    before_parse(b"", meta, TensorRTOptions(), "10.3.0", print)  # strongly typed: fine


def test_simulated_run_device_drops_the_captured_graph(sim, engine):
    """E5: a graph captured by run() is never replayed over run_device's bindings."""
    arrays = cuda_sim.SimArrays(sim)
    with Segmenter.open(engine, cuda_graph=True) as seg:
        batch = random_batch(2, 1)
        assert_expected(seg.run(batch), batch)
        assert seg.runner._graph is not None
        image = arrays.upload(batch)
        outs = {"logits": arrays.empty(batch.shape, np.float32)}
        seg.run_device(image, outs)  # the same shape as the captured graph
        assert seg.runner._graph is None and sim.live_graphs() == 0
        assert_expected({"logits": arrays.download(outs["logits"])}, batch)
        other = random_batch(2, 2)
        assert_expected(seg.run(other), other)  # recaptured for run()'s own buffers


def test_simulated_async_run_device_keeps_the_callers_tensors_alive(sim, engine):
    """E6: the caller's owners stay referenced until the queued work is known done."""
    import gc
    import weakref

    arrays = cuda_sim.SimArrays(sim)
    with Segmenter.open(engine) as seg:
        batch = random_batch(2, 3)
        image = arrays.upload(batch)
        out = arrays.empty(batch.shape, np.float32)
        caller = arrays.stream()
        seg.run_device(image, {"logits": out}, stream=int(caller))
        watched = weakref.ref(image)
        del image
        gc.collect()
        assert watched() is not None and sim.pending(caller)  # queued work still reads it
        arrays.synchronize(caller)
        seg.run_device(arrays.upload(batch), {"logits": out}, stream=int(caller))
        gc.collect()
        assert watched() is None  # the first call's work was done: released
        arrays.synchronize(caller)
        assert_expected({"logits": arrays.download(out)}, batch)


def test_simulated_runners_share_one_engine_per_file(sim, engine):
    """E7: several Segmenters on one file share the deserialised engine, one context each;
    each context's device memory is reported."""
    from ocr_deploy.backends.tensorrt.runner import ENGINES

    first, second = Segmenter.open(engine), Segmenter.open(engine)
    assert first.runner.engine is second.runner.engine and len(ENGINES) == 1
    assert first.runner.context is not second.runner.context
    assert len(first.runner.engine.contexts) == 2
    assert first.runner.info()["context_device_memory_bytes"] == 8 * H * W * 3 * 4
    batch = random_batch(3, 4)
    first.close()
    assert_expected(second.run(batch), batch)  # the engine outlives the first runner
    second.close()
    assert len(ENGINES) == 0


def test_end_to_end_range_defaults_to_batch_one(monkeypatch):
    """E7: a context allocates for the profile's largest shapes: an image size range builds
    with batch 1:1:1 unless --batch-profile asks for more (STUBBED engine build)."""
    from ocr_deploy.backends.tensorrt import build, engine
    from ocr_deploy.backends.tensorrt.options import DYNAMIC_PROFILE, TensorRTOptions
    from ocr_deploy.contract.metadata import ExportMetadata

    given = []

    def build_engine(spec, progress=None):
        given.append(spec.profiles)
        return engine.BuiltEngine(b"stub plan", None, [], layers=1)

    monkeypatch.setattr(engine, "build_engine", build_engine)
    monkeypatch.setattr(ExportMetadata, "image_profile",
                        lambda self: [(48, 64), (96, 128), (96, 128)])
    monkeypatch.setattr(ExportMetadata, "image_sizes", lambda self: ((48, 64), (96, 128)))
    meta = _e2e_range_meta("fp16")
    notes = []
    with cuda_sim.simulated(), tensorrt_standin.installed():
        for batch in (DYNAMIC_PROFILE, (1, 1, 8)):  # the default, then --batch-profile 1:1:8
            options = TensorRTOptions(batch=batch, use_timing_cache=False)
            build.build_artifact(b"", Path("/dev/null"), Path("m.engine"), meta, "fp16",
                                 options, notes.append)
    assert [[shape[0] for shape in profile["image"]] for profile in given] == [
        [1, 1, 1], [1, 1, 8]]
    assert any("batch profile 1:1:1" in note for note in notes)


@pytest.mark.parametrize("version, usable", [("8.6.1", False), ("10.3.0.30", True),
                                             ("11.4.0.106", True)])
def test_tensorrt_floor_is_ten(version, usable, monkeypatch):
    """E8: TensorRT 8.6 (JetPack 6.0) is refused with a clear message, not an AttributeError
    later."""
    from ocr_deploy.backends.tensorrt.library import availability, import_tensorrt

    with tensorrt_standin.installed() as trt:
        monkeypatch.setattr(trt, "__version__", version)
        if usable:
            assert import_tensorrt() is trt
        else:
            with pytest.raises(BadInputError, match=r"TensorRT >= 10 \(on Jetson: JetPack "
                               r">= 6\.1\).*found TensorRT 8\.6\.1"):
                import_tensorrt()
            ok, reason = availability()
            assert not ok and "JetPack >= 6.1" in reason


def test_simulated_no_warning_without_dla(sim, engine):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Segmenter.open(engine, cuda_graph=True).close()
