"""SIMULATED: the TensorRT runner's control flow on a simulated CUDA runtime (``cuda_sim``,
host memory, deferred asynchronous work) with a TensorRT stand-in (``tensorrt_standin``,
whose inference is a device-to-device copy). These tests check ocr-deploy's own logic —
buffers, streams, events, graphs, caller memory, refusals — not CUDA and not TensorRT;
``benchmarks/gpu_check.py`` runs the same flow on a real GPU.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import cuda_sim
import numpy as np
import pytest
import tensorrt_standin
from array_views import DLPackOnly
from tensorrt_standin import assert_expected, random_batch

from ocr_deploy.backends.tensorrt.library import ErrorLog
from ocr_deploy.backends.tensors import TensorRef
from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.errors import BadInputError, CudaError
from ocr_deploy.runtime import Segmenter

ROOT = Path(__file__).resolve().parents[1]
H = W = tensorrt_standin.SIM_SIZE
DEVICE = tensorrt_standin.SIM_DEVICE




@pytest.fixture
def failing_engine(tmp_path):
    return tensorrt_standin.write_engine(tmp_path / "failing.engine", H, W, 8,
                                         fail_under_capture=True, device=DEVICE)




def _produce(arrays, seg, batch: np.ndarray, outputs=("logits", "labels")):
    """The input written on a producer stream (still queued), zeroed outputs beside it."""
    source = arrays.upload(batch)
    producer = arrays.stream()
    with arrays.current(producer):
        image = arrays.empty(batch.shape, np.float32)
        outs = {n: arrays.empty(seg.output_shape(n, len(batch)), seg.output_dtype(n))
                for n in outputs}
        arrays.copy(image, source)
    return producer, image, outs


def test_simulated_run_round_trip_frees_everything(sim, engine):
    seg = Segmenter.open(engine)
    batch = random_batch(2)
    assert_expected(seg.run(batch), batch)
    assert_expected(seg.run(batch, ["labels"]), batch)
    assert sim.live_allocations("pinned") and sim.live_allocations("device")
    seg.close()
    assert sim.live_allocations() == [] and sim.live_graphs() == 0


def test_simulated_buffers_grow_only_for_larger_batches(sim, engine):
    with Segmenter.open(engine) as seg:
        runner, sizes, held = seg.runner, [], set()
        for count in (1, 4, 2, 8, 3):
            batch = random_batch(count, count)
            assert_expected(seg.run(batch), batch)
            sizes.append(runner._device[INPUT_NAME].nbytes // (H * W * 3 * 4))
            held |= {b.ptr for b in runner._device.values()}
        assert sizes == [1, 4, 4, 8, 8]
        freed = [ptr for call, ptr in sim.log if call == "cudaFree" and ptr in held]
        assert len(held) == 3 * 3 and len(freed) == 2 * 3  # 3 buffers moved at 4 and at 8


def test_simulated_cuda_graph_capture_replay_recapture(sim, engine):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no capture-failure warning
        seg = Segmenter.open(engine, cuda_graph=True)
    log = seg.runner.context.executions
    kinds = []
    for i, count in enumerate((2, 2, 3, 3, 2, 8)):
        before, launches = len(log), sum(c == "cudaGraphLaunch" for c, _ in sim.log)
        batch = random_batch(count, 10 + i)
        assert_expected(seg.run(batch), batch)  # fresh data each time: a replay reads the new input
        assert sum(c == "cudaGraphLaunch" for c, _ in sim.log) == launches + 1
        kinds.append([e["captured"] for e in log[before:]])
    assert kinds == [[False, True], [], [False, True], [], [False, True], [False, True]]
    assert sim.live_graphs() == 2  # one graph and its executable: old ones destroyed
    seg.close()
    assert sim.live_graphs() == 0


def test_simulated_capture_failure_falls_back_with_one_warning(sim, failing_engine):
    seg = Segmenter.open(failing_engine, cuda_graph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, count in enumerate((2, 2, 3)):
            batch = random_batch(count, 20 + i)
            assert_expected(seg.run(batch), batch)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "CUDA graph capture failed" in messages[0]
    assert "cudaErrorStreamCaptureUnsupported" in messages[0]  # the stand-in's own error only
    assert not seg.runner._use_graphs and sim.live_graphs() == 0
    assert sim._stream(seg.runner.stream).capture is None  # the stream left capture mode
    seg.close()


def test_simulated_graph_instantiation_failure_leaks_no_graph(sim, engine):
    seg = Segmenter.open(engine, cuda_graph=True)
    sim.fail_next("cudaGraphInstantiate", cuda_sim.cudaError_t.cudaErrorMemoryAllocation)
    with pytest.warns(UserWarning, match="cudaErrorMemoryAllocation"):
        batch = random_batch(2)
        assert_expected(seg.run(batch), batch)
    assert sim.live_graphs() == 0  # the captured graph was destroyed with the failure
    seg.close()


def test_simulated_threads_share_one_runner(sim, engine):
    failures = []
    with Segmenter.open(engine, cuda_graph=True) as seg:
        def worker(index):
            try:
                for call in range(8):
                    batch = random_batch(1 + (index + call) % 3, 100 * index + call)
                    assert_expected(seg.run(batch), batch)
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:1]


def test_simulated_run_device_on_a_caller_stream_is_asynchronous_and_ordered(sim, engine):
    """run_device returns with the work queued on the caller's stream, behind the producer's
    write (DLPack handshake); the runner's next run() waits for it (its event)."""
    arrays = cuda_sim.SimArrays(sim)
    with Segmenter.open(engine) as seg:
        batch, other = random_batch(2, 1), random_batch(3, 2)
        producer, image, outs = _produce(arrays, seg, batch)
        caller = arrays.stream()
        with arrays.current(producer):
            seg.run_device(image, outs, stream=int(caller))
        assert sim.pending(caller) > 0 and sim.pending(producer) > 0  # nothing ran yet
        assert seg.runner._event_pending
        assert_expected(seg.run(other), other)
        assert sim.pending(caller) == 0  # run() waited for the caller's stream first
        arrays.synchronize(caller)
        assert_expected({n: arrays.download(v) for n, v in outs.items()}, batch)


@pytest.mark.parametrize("protocol", ["dlpack", "cai", "own"])
@pytest.mark.parametrize("consumer", ["runner", "caller", "default"])
def test_simulated_run_device_waits_for_the_producer(sim, engine, protocol, consumer):
    arrays = cuda_sim.SimArrays(sim)
    wrap = {"dlpack": DLPackOnly, "cai": arrays.cai_only, "own": lambda x: x}[protocol]
    with Segmenter.open(engine) as seg:
        batch = random_batch(2, 3)
        producer, image, outs = _produce(arrays, seg, batch)
        stream = {"runner": None, "caller": int(arrays.stream()), "default": 0}[consumer]
        with arrays.current(producer):
            seg.run_device(wrap(image), {n: wrap(v) for n, v in outs.items()}, stream=stream)
        if stream is not None:
            arrays.synchronize(stream)
        assert_expected({n: arrays.download(v) for n, v in outs.items()}, batch)


def test_simulation_catches_a_consumer_that_does_not_wait(sim, engine, monkeypatch):
    """The same run with the DLPack handshake removed reads the zeroed input: the tests
    above can fail."""
    from ocr_deploy.backends import tensors

    original = tensors._from_dlpack
    monkeypatch.setattr(tensors, "_from_dlpack", lambda v, what, s: original(v, what, None))
    arrays = cuda_sim.SimArrays(sim)
    with Segmenter.open(engine) as seg:
        batch = random_batch(2, 4)
        producer, image, outs = _produce(arrays, seg, batch)
        with arrays.current(producer):
            seg.run_device(DLPackOnly(image), {n: DLPackOnly(v) for n, v in outs.items()})
        got = arrays.download(outs["logits"])
    assert not np.array_equal(got, tensorrt_standin.expected(batch)["logits"])
    sim.faults.clear()


def test_simulated_misaligned_memory_is_refused_before_it_runs(sim, engine):
    arrays = cuda_sim.SimArrays(sim)
    with Segmenter.open(engine) as seg:
        image = arrays.misaligned((2, H, W, 3), np.float32)
        logits = arrays.empty(seg.output_shape("logits", 2), np.float32)
        for wrap in (DLPackOnly, arrays.cai_only, lambda x: x):
            with pytest.raises(BadInputError, match="256-byte aligned address"):
                seg.run_device(wrap(image), {"logits": wrap(logits)})
        with pytest.raises(BadInputError, match=r"offset 4\)"):
            seg.run_device((image.ptr, image.nbytes), {"logits": logits.ptr}, batch=2)
        assert seg.runner.context.executions == []


def test_simulated_address_tensorrt_refuses_is_an_error(sim, engine):
    with Segmenter.open(engine) as seg:
        runner = seg.runner
        batch = random_batch(2, 5)
        assert_expected(seg.run(batch), batch)
        done = len(runner.context.executions)
        pointer = sim.cudaMalloc(batch.nbytes + 256)[1]
        shape, f32 = batch.shape, np.dtype(np.float32)
        with pytest.raises(BadInputError, match=r"an address TensorRT accepts for 'image'.*"
                           r"refused"):
            runner.run_device(TensorRef(pointer + 4, shape, f32, "cuda"),
                              {"logits": TensorRef(pointer, shape, f32, "cuda")}, 2, None)
        assert runner.context.address_calls[-1] == (INPUT_NAME, pointer + 4, False)
        assert len(runner.context.executions) == done  # nothing ran on the old binding
        assert_expected(seg.run(batch), batch)
        sim.cudaFree(pointer)


def test_simulated_memory_on_another_gpu_is_refused(sim, engine, tmp_path):
    with Segmenter.open(engine) as seg:
        pointer = sim.cudaMalloc(4096)[1]
        shape, f32 = (2, H, W, 3), np.dtype(np.float32)
        for device_id in (1, 0):
            refs = [TensorRef(pointer, shape, f32, "cuda", d)
                    for d in (device_id, 1 - device_id)]
            with pytest.raises(BadInputError, match=r"memory on GPU 0 .* found memory on GPU 1"):
                seg.runner.run_device(refs[0], {"logits": refs[1]}, 2, None)
        sim.cudaFree(pointer)
    with pytest.raises(CudaError, match=r"cudaSetDevice to succeed.*cudaErrorInvalidDevice"):
        Segmenter.open(engine, device_id=5)


def _pending_run_device(sim, seg):
    """run_device on a caller's stream asking for logits only: labels go to the runner's own
    buffer, written by work still queued when this returns."""
    arrays = cuda_sim.SimArrays(sim)
    batch = random_batch(2, 6)
    assert_expected(seg.run(batch), batch)  # own buffers sized for batch 2
    producer, image, outs = _produce(arrays, seg, batch, outputs=("logits",))
    caller = arrays.stream()
    with arrays.current(producer):
        seg.run_device(image, outs, stream=int(caller))
    assert sim.pending(caller)
    return arrays, caller, outs, batch


def test_simulated_close_waits_for_the_pending_event_before_freeing(sim, engine):
    seg = Segmenter.open(engine)
    event = seg.runner._event.handle
    arrays, caller, outs, batch = _pending_run_device(sim, seg)
    mark = len(sim.log)
    seg.close()
    calls = [call for call, _ in sim.log[mark:]]
    assert calls.index("cudaEventSynchronize") < calls.index("cudaFree")
    assert sim.event(event).synchronizations == 1 and sim.pending(caller) == 0
    assert_expected({"logits": arrays.download(outs["logits"])}, batch)


def test_simulated_growth_waits_for_the_pending_event_before_freeing(sim, engine):
    """A larger run() re-allocates the runner's labels buffer that queued run_device work
    still writes: it must wait for that work first."""
    with Segmenter.open(engine) as seg:
        arrays, caller, outs, batch = _pending_run_device(sim, seg)
        bigger = random_batch(4, 7)
        assert_expected(seg.run(bigger), bigger)
        assert sim.pending(caller) == 0
        assert_expected({"logits": arrays.download(outs["logits"])}, batch)


def test_simulation_catches_freeing_before_the_pending_event(sim, engine, monkeypatch):
    from ocr_deploy.backends.tensorrt.runner import TensorRTRunner

    monkeypatch.setattr(TensorRTRunner, "_wait_pending", lambda self: None)
    seg = Segmenter.open(engine)
    _, caller, _, _ = _pending_run_device(sim, seg)
    seg.close()
    sim.cudaStreamSynchronize(caller)
    assert any("was freed" in fault for fault in sim.faults)
    sim.faults.clear()


def test_error_log_keeps_the_errors_of_each_call_apart():
    log = ErrorLog()
    first = log.mark()
    log.record("a")
    second = log.mark()
    assert log.since(second) == "" and log.since(first) == "a"
    for i in range(ErrorLog.KEEP + 5):
        log.record(f"e{i}")
    assert log.since(second) == f"e{ErrorLog.KEEP + 3}; e{ErrorLog.KEEP + 4}"  # the last two
    assert len(log.messages) == ErrorLog.KEEP


def test_simulated_errors_reported_are_those_of_their_own_call(sim, tmp_path, failing_engine):
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(b"\0" * 64)
    from sidecars import write_sidecar

    from ocr_deploy.sidecar import read_sidecar

    write_sidecar(garbage, read_sidecar(failing_engine))
    with pytest.raises(BadInputError, match=r"deserialisation failed .*magic tag"):
        Segmenter.open(garbage)
    seg = Segmenter.open(failing_engine, cuda_graph=True)
    with pytest.warns(UserWarning, match="capture failed") as caught:
        seg.run(random_batch(1))
    assert "magic tag" not in str(caught[0].message)  # the earlier call's error stays there
    seg.close()


def test_simulated_runtime_is_as_strict_as_cuda_python_about_enums(sim):
    pointer = sim.cudaMalloc(64)[1]
    with pytest.raises(TypeError, match="kind"):
        sim.cudaMemcpyAsync(pointer, pointer, 64, 3, 0)  # an int, not cudaMemcpyKind
    with pytest.raises(TypeError, match="mode"):
        sim.cudaStreamBeginCapture(sim.cudaStreamCreate()[1], 1)
    sim.cudaFree(pointer)


def test_simulated_gpu_check_script_runs_end_to_end(tmp_path):
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"),
                          "--simulate", "--json", str(report)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines[0].startswith("TensorRT itself did NOT run") and lines[-2] == lines[0]
    assert "simulated runtime" in lines[0]
    counts = re.fullmatch(r"(\d+) passed, 0 failed, (\d+) skipped", lines[-1])
    assert counts and int(counts[1]) >= 14, lines[-1]
    data = json.loads(report.read_text())
    assert data["tensorrt_ran"] is False and data["simulated"] is True
    assert [c["name"] for c in data["checks"] if c["status"] == "failed"] == []
    assert not any("PASS" in line and ("PyTorch" in line or "CuPy" in line) for line in lines)


def test_simulated_static_profile_pads_and_splits(sim, tmp_path):
    """A stand-in engine with the static profile 2:2:2 (simulated CUDA, no TensorRT: the
    runner's logic only): 1, 2 and 3 images run as runs of exactly 2 (the last image
    repeated to fill one), and come back one output per image given."""
    path = tensorrt_standin.write_engine(tmp_path / "static.engine", H, W, 2, device=DEVICE,
                                         min_batch=2)
    with Segmenter.open(path) as seg:
        assert (seg.runner.min_batch, seg.runner.max_batch) == (2, 2)
        for count in (1, 2, 3):
            batch = random_batch(count, 40 + count)
            got = seg.runner.run(batch, list(seg.runner.output_names))
            runs = [batch[:2], np.concatenate([batch[2:], batch[2:]])] if count == 3 else \
                [np.concatenate([batch] * (3 - count))]
            want = [tensorrt_standin.expected(run) for run in runs]
            for name, value in got.items():
                assert len(value) == count
                np.testing.assert_array_equal(
                    value, np.concatenate([w[name] for w in want])[:count], err_msg=name)
        with pytest.raises(BadInputError, match="exactly 2"):
            one = random_batch(1)
            seg.run_device(one, {name: np.zeros(seg.output_shape(name, 1),
                                                seg.output_dtype(name))
                                 for name in seg.output_names})
