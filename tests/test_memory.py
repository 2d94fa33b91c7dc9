"""Memory at deployment resolution: the budget and the batch sizes derived from it, the
streaming accumulators of the verification (equal to the all-at-once figures), allocation
failures as exit code 7 with nothing written, and fixed-batch artifacts fitted by the
runner (same labels as a dynamic-batch artifact for any number of images)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocr_deploy.errors import EXIT_MEMORY, MemoryExhaustedError
from ocr_deploy.memory_budget import (
    MemoryBudget,
    allocation_failure,
    exhaustion,
    parse_size,
)
from ocr_deploy.metrics import confusion_matrix, mean_iou
from ocr_deploy.precision.shapes import RUNNER_OVERHEAD, forward_bytes
from ocr_deploy.verification.comparison import Comparison, compare, top2_gap

# -- the budget -------------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [("2G", 2 << 30), ("512M", 512 << 20),
                                        ("1.5GiB", 3 << 29), ("800MB", 800 << 20),
                                        ("1048576", 1 << 20), ("4g", 4 << 30)])
def test_sizes_parse_in_powers_of_1024(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "two gigs", "-1G", "512K", "1Q", "inf"])
def test_bad_or_tiny_sizes_are_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_batch_sizes_derive_from_the_budget():
    budget = MemoryBudget(1000 << 20, "test")
    assert budget.batch_size(100 << 20) == 10
    assert budget.batch_size(100 << 20, fixed=500 << 20) == 5
    assert budget.batch_size(100 << 20, largest=8) == 8
    assert budget.batch_size(2000 << 20) == 1  # never below one sample
    assert budget.batch_size(1 << 20, input_bytes=1 << 19) == 4  # 2 MiB of input at most
    assert budget.batch_size(1 << 20, input_bytes=3 << 20) == 1


def test_the_default_is_a_fraction_of_the_available_memory(tmp_path, monkeypatch):
    import ocr_deploy.memory_budget as memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:  4194304 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    budget = MemoryBudget.default()
    assert budget.bytes == (4 << 30) * memory.DEFAULT_FRACTION
    assert "MemAvailable" in budget.source and "4.00 GiB" in budget.source
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 1 << 30)  # a container's tighter limit
    budget = MemoryBudget.default()
    assert budget.bytes == (1 << 30) * memory.DEFAULT_FRACTION and "cgroup" in budget.source


def test_forward_bytes_is_the_largest_set_of_live_activations():
    from onnx import TensorProto, helper, numpy_helper

    # x[1,4,8,8] -> a = Relu(x) -> b = Relu(a) -> c = Add(a, b) -> y = Relu(c)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Mul", ["c", "w"], ["y"])]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       ["n", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [numpy_helper.from_array(np.ones((1,), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    one = 4 * 8 * 8 * 4
    # at the Add: a and b (still read) and c are alive; x died after the first Relu
    assert forward_bytes(model) == int(3 * one * RUNNER_OVERHEAD)


# -- streaming accumulators equal the all-at-once figures -------------------------------


def _scores(seed: int, shape=(6, 10, 12, 5)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, shape).astype(np.float32)


def test_streamed_comparison_with_ties_and_masks_equals_one_comparison():
    ref = _scores(0)
    ref[:, :3, :3, 1] = ref[:, :3, :3, 0]  # exact ties in a corner of every image
    cand = ref + np.random.default_rng(1).normal(0, 0.3, ref.shape).astype(np.float32)
    counted = np.random.default_rng(2).random(ref.shape[:3]) > 0.2
    kinds = {"logits": "logits"}
    whole = Comparison(kinds, atol=0.1, rtol=0.01, min_agreement=0.5)
    whole.add({"logits": ref}, {"logits": cand}, counted)
    streamed = Comparison(kinds, atol=0.1, rtol=0.01, min_agreement=0.5)
    for begin, end in ((0, 1), (1, 4), (4, 6)):
        streamed.add({"logits": ref[begin:end]}, {"logits": cand[begin:end]},
                     counted[begin:end])
    a, b = whole.report().to_dict(), streamed.report().to_dict()
    assert a["outputs"][0]["tie_pixels"] > 0  # the case this test is about
    for x, y in zip(a.pop("outputs"), b.pop("outputs"), strict=True):
        assert x == pytest.approx(y)
    assert a == b


def test_scores_are_compared_in_blocks_without_float64_maps(monkeypatch):
    import ocr_deploy.verification.comparison as comparison

    ref = _scores(3, (2, 40, 30, 5))
    cand = ref + np.float32(0.01) * _scores(4, (2, 40, 30, 5))
    whole = compare({"s": ref}, {"s": cand}, {"s": "logits"}).to_dict()
    monkeypatch.setattr(comparison, "BLOCK", 257)  # many blocks, strided views too
    nchw = np.moveaxis(np.ascontiguousarray(np.moveaxis(ref, -1, 1)), 1, -1)
    blocked = compare({"s": nchw}, {"s": cand}, {"s": "logits"}).to_dict()
    for x, y in zip(whole.pop("outputs"), blocked.pop("outputs"), strict=True):
        assert x == pytest.approx(y, rel=1e-9)
    assert whole == blocked
    assert top2_gap(ref).dtype == np.float32


def test_confusion_counts_per_batch_give_the_all_at_once_iou():
    rng = np.random.default_rng(5)
    pred, target = rng.integers(0, 4, (2, 6, 9, 9))
    target[0, 0] = 255
    total = sum(confusion_matrix(pred[i:i + 2], target[i:i + 2], 4, 255) for i in (0, 2, 4))
    from ocr_deploy.metrics import iou_from_confusion

    streamed, per_class = iou_from_confusion(total)
    whole, whole_per_class = mean_iou(pred, target, 4, 255)
    assert streamed == pytest.approx(whole)
    np.testing.assert_allclose(per_class, whole_per_class)


def _samples(meta, count: int, masks: bool, folder):
    from PIL import Image

    from ocr_deploy.precision.calibration_data import load_samples

    rng = np.random.default_rng(7)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(folder / f"{i}.png")
        if masks:
            mask = rng.integers(0, meta.num_classes, (64, 64)).astype(np.uint8)
            mask[:4] = 255
            Image.fromarray(mask).save(folder / "labels" / f"{i}.png")
    return load_samples(folder, meta, with_masks=masks)


@pytest.mark.parametrize("artifact", ["nhwc_onnx", "batch2_onnx"])
def test_the_verdict_is_the_same_in_any_batch(artifact, request, tmp_path):
    """The verdict's figures (agreement, ties, mIoU, per-class IoU, score errors) in
    batches of 1, 3 and 8 are those of one batch of all samples; a fixed-batch artifact
    gets the same figures (the runner pads and splits)."""
    from ocr_deploy.backends import get
    from ocr_deploy.contract.metadata import read_metadata
    from ocr_deploy.verification.accuracy import artifact_accuracy

    path = request.getfixturevalue(artifact)
    meta = read_metadata(path)
    data = _samples(meta, 7, True, tmp_path / "val")
    fp32 = path.read_bytes()
    # the candidate: the same net with its weights nudged, so that labels differ a little
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        value = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array(
            (value * 1.03 + 0.01).astype(value.dtype), tensor.name))
    candidate = tmp_path / "candidate.onnx"
    onnx.save(model, str(candidate))
    runner = get("onnxruntime").open_runner(candidate, None)
    try:
        results = [artifact_accuracy(runner, fp32, data, meta, batch=batch).to_dict()
                   for batch in (7, 1, 3, 8)]
    finally:
        runner.close()
    first = results[0]
    assert 0.5 < first["agreement"] < 1.0 and first["miou"] is not None
    for other in results[1:]:
        assert other["per_class_iou"] == pytest.approx(first["per_class_iou"])
        for key in ("agreement", "miou", "miou_fp32", "tie_pixels", "agreement_all_pixels"):
            assert other[key] == pytest.approx(first[key]), key
        assert other["scores"] == pytest.approx(first["scores"])


def test_the_proxy_reference_is_kept_on_disk_and_removed(nhwc_onnx, tmp_path):
    from ocr_deploy.contract.metadata import read_metadata
    from ocr_deploy.verification.accuracy import proxy_accuracy, reference

    meta = read_metadata(nhwc_onnx)
    data = _samples(meta, 5, True, tmp_path / "val")
    fp32 = nhwc_onnx.read_bytes()
    figures = []
    for batch in (5, 2):
        with reference(fp32, data, meta, batch) as ref:
            folder = ref.folder
            assert ref.batches == -(-5 // batch)
            figures.append(proxy_accuracy(fp32, data, meta, ref, batch=batch).to_dict())
        import os

        assert not os.path.exists(folder)
    assert figures[0]["agreement"] == 1.0 and figures[0]["miou"] == figures[0]["miou_fp32"]
    assert figures[0] == figures[1] | {"runner": figures[0]["runner"]}


# -- allocation failures ----------------------------------------------------------------


@pytest.mark.parametrize("exc, needed", [
    (MemoryError("Unable to allocate 608. MiB for an array with shape (8, 512, 1024, 19) "
                 "and data type float64"), 608 << 20),
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
                  "while running Concat node. Name:'c' Status Message: bfc_arena.cc:376 "
                  "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool) Failed to "
                  "allocate memory for requested buffer of size 2830172160"), 2830172160),
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : std::bad_alloc"), None),
    (RuntimeError("Requested amount of GPU memory (1073741824 bytes) could not be allocated. "
                  "There may not be enough free memory for allocation to succeed."), 1 << 30),
    (OSError(12, "Cannot allocate memory"), None),
    (RuntimeError("TensorRT: 2: [executionContext.cpp::enqueueV3] Error Code 2: OutOfMemory "
                  "(Requested size was 536870912 bytes.)"), 512 << 20),
])
def test_allocation_failures_are_recognised(exc, needed):
    assert allocation_failure(exc) == (True, needed)
    with pytest.raises(MemoryExhaustedError) as caught, exhaustion("verifying the build"):
        raise exc
    line = caught.value.one_line()
    assert "verifying the build" in line and "--memory-budget" in line and "\n" not in line
    assert caught.value.exit_code == EXIT_MEMORY == 7


def test_other_errors_are_not_memory_errors():
    assert allocation_failure(RuntimeError("Got invalid dimensions for input"))[0] is False
    with pytest.raises(ValueError), exhaustion("a step"):
        raise ValueError("not memory")


def test_an_onnxruntime_allocation_failure_in_a_build_exits_7_and_writes_nothing(
        nhwc_onnx, tmp_path, monkeypatch, capsys):
    """ONNX Runtime's own exception type, raised where the verification runs the built
    artifact: exit 7, one line naming the step, no artifact and no sidecar."""
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    from ocr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
    from ocr_deploy.builder.cli import main

    def fail(self, batch, outputs):
        raise RuntimeException("Non-zero status code returned while running Conv node. "
                               "Status Message: bfc_arena.cc:376 Failed to allocate memory "
                               "for requested buffer of size 1073741824")

    monkeypatch.setattr(OnnxRuntimeRunner, "run_batch", fail)
    out = tmp_path / "engines" / "m_fp16.onnx"
    code = main([str(nhwc_onnx), "--fp16", "--backend", "onnxruntime", "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 7, err
    assert len(err.splitlines()) == 1 and "verifying the built artifact" in err
    assert "1.00 GiB" in err and "--memory-budget" in err and "Traceback" not in err
    assert not any(out.parent.iterdir()) if out.parent.exists() else True


def test_a_numpy_memory_error_outside_any_stage_exits_7(nhwc_onnx, tmp_path, monkeypatch,
                                                        capsys):
    import ocr_deploy.runtime.predict_cli as predict_cli
    from ocr_deploy.runtime.segmenter import Segmenter

    def fail(self, images, **_):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (8, 1024, "
                          "2048, 19) and data type float32")

    monkeypatch.setattr(Segmenter, "predict", fail)
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    code = predict_cli.main([str(tmp_path / "a.png"), "--model", str(nhwc_onnx), "-o",
                             str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 7 and "ocr-predict" in err and "3.00 GiB" in err and "--max-batch 1" in err
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_the_budget_is_stated_in_the_build_json(nhwc_onnx, tmp_path, capsys):
    from ocr_deploy.builder.cli import main

    out = tmp_path / "m.onnx"
    assert main([str(nhwc_onnx), "--fp16", "--backend", "onnxruntime", "-o", str(out),
                 "--memory-budget", "64M", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    memory = info["memory"]
    assert memory["budget"] == {"bytes": 64 << 20, "source": "--memory-budget"}
    assert memory["forward_bytes_per_sample"] > 0
    assert info["verification"]["batch"] == memory["verification_batch"] >= 1
    assert "memory" not in info["metadata"]["build"]  # the machine's, not the artifact's
    assert json.loads(out.with_name(out.name + ".json").read_text())["memory"] == memory
    assert "below" not in capsys.readouterr().err
    assert main([str(nhwc_onnx), "--fp16", "--backend", "onnxruntime", "-o", str(out),
                 "--memory-budget", "1M", "--force", "-q"]) == 0
    warning = capsys.readouterr().err
    assert "warning: --memory-budget 1 MiB is below the" in warning
    assert "verifying one at a time" in warning


# -- fixed-batch artifacts --------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_fixed_batch_artifact_predicts_any_number_of_images(nhwc_onnx, batch2_onnx, count):
    from ocr_deploy.runtime.segmenter import Segmenter

    rng = np.random.default_rng(count)
    images = [rng.integers(0, 256, (64 + 8 * i, 64, 3), np.uint8) for i in range(count)]
    with Segmenter.open(nhwc_onnx) as dynamic, Segmenter.open(batch2_onnx) as fixed:
        assert (fixed.runner.min_batch, fixed.runner.max_batch) == (2, 2)
        assert fixed.runner.batch_limits() == "exactly 2"
        for got, want in zip(fixed.predict(images), dynamic.predict(images), strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(fixed.predict_scores(images), dynamic.predict_scores(images),
                             strict=True):
            np.testing.assert_array_equal(got, want)
        prepared = fixed.prepare(images[:1])
        np.testing.assert_array_equal(fixed.run(prepared)["labels"],
                                      dynamic.run(prepared)["labels"])


def test_run_device_needs_the_fixed_batch(batch2_onnx):
    from ocr_deploy.errors import BadInputError
    from ocr_deploy.runtime.segmenter import Segmenter

    with Segmenter.open(batch2_onnx) as fixed:
        one = np.zeros(fixed.input_shape(1), np.float32)
        out = np.zeros(fixed.output_shape("labels", 1), np.int32)
        with pytest.raises(BadInputError, match="exactly 2"):
            fixed.run_device(one, {"labels": out})


def test_the_runner_splits_and_pads_to_its_limits():
    from ocr_deploy.backends.runner import Runner

    class Echo(Runner):
        name, input_name, input_dtype, output_names = "echo", "x", np.float32, ("y",)
        min_batch, max_batch = 3, 4

        def __init__(self):
            self.seen = []

        def input_shape(self, batch):
            return (batch, 1)

        def output_shape(self, name, batch):
            return (batch, 1)

        def output_dtype(self, name):
            return np.float32

        def run_batch(self, batch, outputs):
            self.seen.append(len(batch))
            return {"y": batch * 2}

        def close(self):
            pass

    runner = Echo()
    assert runner.batch_plan(9) == [(0, 4, 4), (4, 4, 4), (8, 1, 3)]
    x = np.arange(9, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(runner.run(x, ["y"])["y"], x * 2)
    assert runner.seen == [4, 4, 3]
    assert runner.batch_limits() == "3 to 4"


def test_predict_and_bench_take_a_fixed_batch_artifact(batch2_onnx, tmp_path):
    from PIL import Image

    from ocr_deploy.bench.runner import benchmark_artifact
    from ocr_deploy.runtime.predict_cli import main

    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    for images in ([tmp_path / "0.png"], [tmp_path / f"{i}.png" for i in range(3)]):
        assert main([*map(str, images), "--model", str(batch2_onnx), "-o",
                     str(tmp_path / "out"), "-q", "--force"]) == 0
    assert len(list((tmp_path / "out").glob("*.labels.png"))) == 3
    result = benchmark_artifact(batch2_onnx, [1, 2, 3], warmup=0, iterations=1)
    assert result["batch_limits"] == "exactly 2"
    assert [b["batch"] for b in result["batches"]] == [2]
    assert [s["batch"] for s in result["skipped_batches"]] == [1, 3]
    assert "padded" in result["skipped_batches"][0]["reason"]
    assert "split" in result["skipped_batches"][1]["reason"]


@pytest.mark.parametrize("count", [1, 3])
def test_the_c_abi_bridge_takes_any_number_of_images_on_a_fixed_batch(nhwc_onnx, batch2_onnx,
                                                                       count):
    """``ocr_segmenter_predict`` through the bridge (caller memory in and out) on the
    fixed-batch-2 artifact writes the labels the dynamic one writes."""
    from ocr_deploy import capi_bridge as bridge

    rng = np.random.default_rng(count)
    images = [np.ascontiguousarray(rng.integers(0, 256, (48, 80, 3), np.uint8))
              for _ in range(count)]
    written = {}
    for name, path in (("dynamic", nhwc_onnx), ("fixed", batch2_onnx)):
        seg = bridge.open_segmenter(str(path), None, "cpu", 0, 1, 0)
        try:
            outputs = [np.zeros((48, 80), np.uint8) for _ in images]
            bridge.predict(seg, [(memoryview(im).cast("B"), 80, 48, 240, 1) for im in images],
                           [(memoryview(out).cast("B"), 80, 1) for out in outputs])
            written[name] = outputs
        finally:
            bridge.close(seg)
    for got, want in zip(written["fixed"], written["dynamic"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(out.any() for out in written["fixed"])


def test_the_verification_and_calibration_batches_derive_from_the_budget(nhwc_onnx):
    from ocr_deploy.contract.metadata import read_metadata
    from ocr_deploy.precision.calibrate import calibration_batch
    from ocr_deploy.verification.accuracy import BATCH, verification_batch

    meta = read_metadata(nhwc_onnx)
    pixels = 64 * 64
    forward = 1 << 20
    per_sample = 4 * pixels * 3 + 2 * forward + 3 * (4 * pixels * 4 + 4 * pixels) + 16 * pixels
    assert verification_batch(meta, forward, MemoryBudget(3 * per_sample, "t")) == 3
    assert verification_batch(meta, forward, MemoryBudget(3 * per_sample - 1, "t")) == 2
    assert verification_batch(meta, forward, MemoryBudget(1 << 40, "t")) == BATCH
    assert verification_batch(meta, 1 << 40, MemoryBudget(1 << 30, "t")) == 1
    per_calibration = 4 * pixels * 3 + 2 * (16 << 20)
    assert calibration_batch(meta, 16, MemoryBudget(5 * per_calibration, "t")) == 5
    from dataclasses import replace

    large = replace(meta, input_height=1024, input_width=2048)  # 24 MiB of input per image
    assert verification_batch(large, forward, MemoryBudget(1 << 40, "t")) == 1
    assert calibration_batch(large, 16, MemoryBudget(1 << 40, "t")) == 1


def test_running_out_of_memory_while_loading_is_not_a_bad_file(nhwc_onnx, monkeypatch):
    import onnxruntime as ort

    from ocr_deploy.runtime.segmenter import Segmenter

    def fail(*args, **kwargs):
        raise ort.capi.onnxruntime_pybind11_state.Fail("std::bad_alloc")

    monkeypatch.setattr(ort, "InferenceSession", fail)
    with pytest.raises(MemoryExhaustedError, match=r"loading .*nhwc\.onnx into ONNX Runtime"):
        Segmenter.open(nhwc_onnx)


def test_the_export_parity_batch_derives_from_the_budget(nhwc_onnx):
    import onnx

    from ocr_deploy.export.pipeline import PARITY_BATCH, parity_batch

    model = onnx.load(str(nhwc_onnx))
    forward = forward_bytes(model)
    inputs, outputs = 4 * 64 * 64 * 3, 4 * 64 * 64 * 4 + 4 * 64 * 64
    per_image = inputs + 3 * forward + 2 * outputs
    assert parity_batch(model, MemoryBudget(1 << 40, "t")) == PARITY_BATCH
    assert parity_batch(model, MemoryBudget(per_image, "t")) == 1
    assert parity_batch(model, MemoryBudget(2 * per_image, "t")) == min(2, PARITY_BATCH)
