"""The TensorRT backend's CUDA layer on a real GPU, for a machine WITHOUT TensorRT.

TensorRT itself does not run here. A stand-in (``tests/tensorrt_standin.py``, put into
``sys.modules["tensorrt"]`` by this script only) plays the engine: its "inference" is a
device-to-device copy. Everything around it is ocr-deploy's real code on the real
cuda-python runtime: pinned and device buffers and their growth, ``run()`` round trips,
CUDA-graph capture / replay / recapture and the capture-failure fallback, one runner from
several threads, ``Segmenter.run_device`` on raw addresses, PyTorch and CuPy arrays over
DLPack and the CUDA array interface with producer/consumer streams, the 256-byte alignment
and device-id refusals, ``close()`` after asynchronous work, and the PyTorch/CuPy
attention-core floors of ``attention_gpu.py``. PyTorch and CuPy are optional: their checks
are skipped, with the reason, when missing.

Each check prints one line (PASS / FAIL / SKIP, name, reason); the last line is
``N passed, N failed`` (``, N skipped`` after it if any). Exit 0 when nothing failed, 1
otherwise, 2 for a bad command line.

    python benchmarks/gpu_check.py [--json PATH] [--no-floors] [--simulate]

``--simulate`` runs the same flow on the simulated runtime of ``tests/cuda_sim.py`` (host
memory, no GPU): a check of this script's control flow, not of CUDA.

End-to-end engines (``ocr-build-engine --end-to-end``: uint8 frames in, labels out) are
not checked here: what is left to check on a GPU is TensorRT itself building and running
that graph (its uint8 input profile, the int32 resize, the comparison argmax, float32
tables), which a machine without TensorRT cannot do. Their CUDA side is the one checked
here (the same runner; an image range only changes the input shape it sets), and their
arithmetic runs on ONNX Runtime CPU in tests/test_end_to_end.py; replaying it in PyTorch
would check PyTorch, not TensorRT. On a machine with TensorRT:
``pytest -m gpu tests/test_tensorrt_build.py`` builds and runs end-to-end engines.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import importlib.metadata
import importlib.util
import json
import platform
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package need not be installed; the
# stand-ins live with the tests that share them

import tensorrt_standin  # noqa: E402
from array_views import CudaArrayInterfaceOnly, DLPackOnly  # noqa: E402

from ocr_deploy import cuda  # noqa: E402
from ocr_deploy.backends.tensors import TensorRef  # noqa: E402
from ocr_deploy.errors import BadInputError, OcrDeployError  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402

HEIGHT = WIDTH = 16
MAX_BATCH = 8
BATCH = 2  # of the producer/consumer runs
NOT_TENSORRT = ("TensorRT itself did NOT run: {where}, ocr-deploy's CUDA layer ran with a "
                "TensorRT stand-in whose inference is a device-to-device copy.")


class Skip(Exception):
    """The check cannot run here (the reason says why)."""


@dataclass
class Result:
    name: str
    status: str  # "passed", "failed" or "skipped"
    reason: str
    seconds: float


def expect(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ------------------------------------------------------------------ array libraries

class TorchArrays:
    """PyTorch CUDA tensors (the adapter surface of ``cuda_sim.SimArrays``)."""

    name = "PyTorch"

    def __init__(self, torch):
        self.torch = torch
        self.version = f"torch {torch.__version__} (CUDA {torch.version.cuda})"

    def _dtype(self, dtype):
        return {"float32": self.torch.float32, "int32": self.torch.int32}[np.dtype(dtype).name]

    def stream(self):
        return self.torch.cuda.Stream()

    def handle(self, stream) -> int:
        return int(stream.cuda_stream)

    def default_handle(self) -> int:
        return int(self.torch.cuda.default_stream().cuda_stream)

    def current(self, stream):
        return self.torch.cuda.stream(stream)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def empty(self, shape, dtype):
        return self.torch.zeros(tuple(shape), dtype=self._dtype(dtype), device="cuda")

    def upload(self, host: np.ndarray):
        array = self.torch.from_numpy(np.ascontiguousarray(host)).to("cuda")
        self.torch.cuda.synchronize()
        return array

    def misaligned(self, shape, dtype):
        count = int(np.prod(shape))
        base = self.torch.zeros(count + 64, dtype=self._dtype(dtype), device="cuda")
        return base[1:1 + count].view(tuple(shape))

    def copy(self, dst, src) -> None:
        dst.copy_(src)

    def download(self, array) -> np.ndarray:
        return array.cpu().numpy()

    def cai_only(self, array):
        """PyTorch's interface is v2 (no stream): report its current stream, as v3 would."""
        return CudaArrayInterfaceOnly(
            array, stream=lambda: int(self.torch.cuda.current_stream().cuda_stream) or 1)


class CupyArrays:
    """CuPy arrays (the adapter surface of ``cuda_sim.SimArrays``)."""

    name = "CuPy"

    def __init__(self, cupy):
        self.cupy = cupy
        self.version = f"cupy {cupy.__version__}"

    def stream(self):
        return self.cupy.cuda.Stream(non_blocking=True)

    def handle(self, stream) -> int:
        return int(stream.ptr)

    def default_handle(self) -> int:
        return int(self.cupy.cuda.Stream.null.ptr)

    def current(self, stream):
        return stream

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def empty(self, shape, dtype):
        return self.cupy.zeros(tuple(shape), dtype=np.dtype(dtype))

    def upload(self, host: np.ndarray):
        array = self.cupy.asarray(np.ascontiguousarray(host))
        self.cupy.cuda.Device().synchronize()
        return array

    def misaligned(self, shape, dtype):
        count = int(np.prod(shape))
        base = self.cupy.zeros(count + 64, dtype=np.dtype(dtype))
        return base[1:1 + count].reshape(tuple(shape))

    def copy(self, dst, src) -> None:
        self.cupy.copyto(dst, src)

    def download(self, array) -> np.ndarray:
        return self.cupy.asnumpy(array)

    def cai_only(self, array):
        return CudaArrayInterfaceOnly(array)  # CuPy's own v3 interface, with its stream


# ------------------------------------------------------------------ the environment

class Env:
    """What the checks share: the runtime, the GPU, engine files, array libraries."""

    def __init__(self, simulate: bool, folder: Path):
        self.simulate, self.folder = simulate, folder
        self.device: dict | None = None
        self.gpu_error = ""
        self.libraries: dict[str, object] = {}  # name -> adapter, or the reason it is missing
        self.floors: dict = {}
        # work queued ahead of a producer's write, so that a consumer that does not wait
        # for the producer reads stale data: ~50 ms of copies on an H200
        self.busy_bytes, self.busy_copies = (4096, 4) if simulate else (256 << 20, 400)
        self._busy: tuple | None = None
        self._engines: dict[bool, Path] = {}

    def need_gpu(self) -> None:
        if self.device is None:
            raise Skip(f"no usable GPU ({self.gpu_error})")

    def engine(self, fail_under_capture: bool = False) -> Path:
        if fail_under_capture not in self._engines:
            name = "failing.engine" if fail_under_capture else "copy.engine"
            self._engines[fail_under_capture] = tensorrt_standin.write_engine(
                self.folder / name, HEIGHT, WIDTH, MAX_BATCH, fail_under_capture, self.device)
        return self._engines[fail_under_capture]

    def open(self, fail_under_capture: bool = False, cuda_graph: bool = False):
        from ocr_deploy.runtime import Segmenter

        return Segmenter.open(self.engine(fail_under_capture), cuda_graph=cuda_graph)

    def busy(self, stream: int) -> None:
        """Queue ~50 ms of device-to-device copies on ``stream`` (a handle)."""
        if self._busy is None:
            buffers = (cuda.DeviceBuffer(), cuda.DeviceBuffer())
            for buffer in buffers:
                buffer.ensure(self.busy_bytes)
            self._busy = buffers
        kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyDeviceToDevice
        a, b = self._busy
        for i in range(self.busy_copies):
            dst, src = (a, b) if i % 2 else (b, a)
            cuda.cuda_call("cudaMemcpyAsync", dst.ptr, src.ptr, self.busy_bytes, kind, stream)

    def library(self, name: str):
        adapter = self.libraries.get(name, f"{name} is not loaded in this mode")
        if isinstance(adapter, str):
            raise Skip(adapter)
        return adapter

    def close(self) -> None:
        for buffer in self._busy or ():
            buffer.free()


def batch_of(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, HEIGHT, WIDTH, 3)).astype(np.float32)


def same(got: dict, batch: np.ndarray, what: str) -> None:
    want = tensorrt_standin.expected(batch)
    for name, value in got.items():
        expect(np.array_equal(np.asarray(value), want[name]),
               f"{what}: '{name}' differs from the stand-in's copy of the input "
               f"({int(np.sum(np.asarray(value) != want[name]))} of {want[name].size} values)")


def executions(segmenter) -> list[dict]:
    return segmenter.runner.context.executions


# ------------------------------------------------------------------ the checks

CHECKS: list = []


def check(name: str):
    def register(function):
        CHECKS.append((name, function))
        return function
    return register


@check("cuda-python sees the GPU")
def check_gpu(env: Env) -> str:
    env.device = None
    try:
        rt = cuda.runtime_module()
        device = cuda.device_info(0)
        driver = cuda.cuda_call("cudaDriverGetVersion")
        runtime = cuda.cuda_call("cudaRuntimeGetVersion")
        used = cuda.memory_used_mib(0)
    except OcrDeployError as exc:
        env.gpu_error = exc.one_line()
        raise AssertionError(env.gpu_error) from None
    if not env.simulate:
        expect(rt.__name__ in ("cuda.bindings.runtime", "cuda.cudart"),
               f"the real path must use cuda-python's runtime, found {rt.__name__}")
    env.device = device
    return (f"{device['gpu_name']} (compute capability {device['compute_capability']}), "
            f"{rt.__name__}, driver CUDA {driver}, runtime {runtime}, {used:.0f} MiB in use")


@check("pinned and device buffers")
def check_buffers(env: Env) -> str:
    env.need_gpu()
    pinned, device, other = cuda.PinnedBuffer(), cuda.DeviceBuffer(), cuda.DeviceBuffer()
    stream = cuda.Stream()
    try:
        expect(pinned.ensure(4096) and device.ensure(4096) and other.ensure(4096),
               "a first ensure() must allocate")
        expect(not device.ensure(1024), "ensure() of less must keep the buffer")
        data = np.random.default_rng(1).integers(0, 255, 4096, np.uint8)
        np.copyto(pinned.view((4096,), np.uint8), data)
        kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyDeviceToDevice
        cuda.copy_async(device.ptr, pinned.ptr, 4096, True, stream.handle)
        cuda.cuda_call("cudaMemcpyAsync", other.ptr, device.ptr, 4096, kind, stream.handle)
        stream.synchronize()  # the H2D copy reads the pinned bytes when it runs
        pinned.view((4096,), np.uint8)[:] = 0
        cuda.copy_async(pinned.ptr, other.ptr, 4096, False, stream.handle)
        stream.synchronize()
        expect(np.array_equal(pinned.view((4096,), np.uint8), data),
               "pinned -> device -> device -> pinned changed the bytes")
        old = device.ptr
        expect(device.ensure(1 << 20) and device.nbytes == 1 << 20, "growth must re-allocate")
        aligned = all(b.ptr % 256 == 0 for b in (pinned, device, other))
        expect(aligned, "allocations must be 256-byte aligned")
        return (f"4 KiB round trip through two device buffers on a stream; growth moved "
                f"0x{old:x} -> 0x{device.ptr:x}; all 256-byte aligned")
    finally:
        for buffer in (pinned, device, other):
            buffer.free()
            buffer.free()  # a second free does nothing
        stream.destroy()


@check("run() round trip")
def check_run(env: Env) -> str:
    env.need_gpu()
    with env.open() as seg:
        expect(seg.runner.name == "tensorrt" and seg.max_batch == MAX_BATCH,
               f"runner {seg.runner.name}, max batch {seg.max_batch}")
        batch = batch_of(2, 2)
        same(seg.run(batch), batch, "run()")
        same(seg.run(batch, ["labels"]), batch, "run(['labels'])")
        info = seg.describe()
        expect(info["tensorrt"] == tensorrt_standin.__version__, f"describe(): {info}")
    return "batch 2 through pinned H2D, the stand-in's copy and D2H; both outputs and one"


@check("buffers grow across batch sizes")
def check_growth(env: Env) -> str:
    env.need_gpu()
    moves = []
    with env.open() as seg:
        runner = seg.runner
        for i, count in enumerate((1, 4, 2, 8, 3)):
            before = runner._device["image"].nbytes
            batch = batch_of(count, 10 + i)
            same(seg.run(batch), batch, f"batch {count}")
            grew = runner._device["image"].nbytes > before
            moves.append(f"{count}{'*' if grew else ''}")
            expect(grew == (count in (1, 4, 8)), f"batch {count}: re-allocated {grew}")
        bound = {a for n, a, ok in runner.context.address_calls if n == "image" and ok}
        expect(len(bound) >= 3, f"input bound at {len(bound)} addresses over 3 growths")
    return f"batches {' '.join(moves)} (* re-allocated), right results after each"


@check("CUDA graph: capture, replay, recapture")
def check_graphs(env: Env) -> str:
    env.need_gpu()
    with warnings.catch_warnings(record=True) as caught, \
            env.open(cuda_graph=True) as seg:
        warnings.simplefilter("always")
        runner, log = seg.runner, executions(seg)
        steps = []
        for i, count in enumerate((2, 2, 2, 3, 3, 2, 8, 8)):
            before = len(log)
            batch = batch_of(count, 20 + i)
            same(seg.run(batch), batch, f"run {i} (batch {count})")
            new = log[before:]
            captured = [e["captured"] for e in new]
            kind = "replay" if not new else "capture" if captured == [False, True] else \
                f"unexpected {captured}"
            steps.append(f"{count}:{kind}")
            want = "capture" if i in (0, 3, 5, 6) else "replay"
            expect(kind == want, f"run {i} (batch {count}): {kind}, expected {want}")
            expect(runner._graph is not None and runner._use_graphs, f"run {i}: no graph")
        ours = [w for w in caught if "CUDA graph" in str(w.message)]
        expect(not ours, f"unexpected warning: {ours[0].message if ours else ''}")
    return " ".join(steps) + " (replays ran no enqueue and gave the new inputs' results)"


@check("CUDA graph capture failure falls back, one warning")
def check_capture_failure(env: Env) -> str:
    env.need_gpu()
    with warnings.catch_warnings(record=True) as caught, \
            env.open(fail_under_capture=True, cuda_graph=True) as seg:
        warnings.simplefilter("always")
        for i, count in enumerate((2, 2, 3, 1)):
            batch = batch_of(count, 30 + i)
            same(seg.run(batch), batch, f"run {i} (batch {count})")
        ours = [str(w.message) for w in caught if "CUDA graph capture failed" in str(w.message)]
        expect(len(ours) == 1, f"{len(ours)} capture-failure warnings, expected 1")
        expect(not seg.runner._use_graphs and seg.runner._graph is None,
               "graphs still on after the failure")
        captured = [e for e in executions(seg) if e["captured"]]
        expect(not captured, "an enqueue recorded as captured")
    return f"results right on 4 runs; warning: {ours[0][:160]}"


@check("several threads on one runner")
def check_threads(env: Env) -> str:
    env.need_gpu()
    threads_count, calls = 6, 12
    failures: list[str] = []
    with env.open(cuda_graph=True) as seg:
        def worker(index: int) -> None:
            try:
                for call in range(calls):
                    batch = batch_of(1 + (index + call) % 3, 1000 * index + call)
                    same(seg.run(batch), batch, f"thread {index} call {call}")
            except Exception as exc:  # reported below
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        expect(not any(t.is_alive() for t in threads), "a thread did not finish in 120 s")
    expect(not failures, f"{len(failures)} failures, first: {failures[:1]}")
    return f"{threads_count} threads x {calls} runs, batches 1-3, CUDA graphs on: all right"


@check("run_device on raw device addresses, caller streams")
def check_raw(env: Env) -> str:
    env.need_gpu()
    with env.open() as seg:
        batch = batch_of(BATCH, 40)
        same(seg.run(batch), batch, "warm-up")  # shape set up, own buffers grown
        buffers = {n: cuda.DeviceBuffer() for n in ("src", "image", "logits", "labels")}
        producer, consumer, event = cuda.Stream(), cuda.Stream(), cuda.Event()
        try:
            sizes = {"src": batch.nbytes, "image": batch.nbytes, "logits": batch.nbytes,
                     "labels": batch.nbytes // 3}
            for name, buffer in buffers.items():
                buffer.ensure(sizes[name])
            kind = cuda.runtime_module().cudaMemcpyKind.cudaMemcpyDeviceToDevice
            cuda.copy_async(buffers["src"].ptr, batch.ctypes.data, batch.nbytes, True,
                            producer.handle)
            producer.synchronize()
            results = []
            for case in ("the producer's stream", "another stream, after an event"):
                for name in ("image", "logits", "labels"):
                    cuda.cuda_call("cudaMemsetAsync", buffers[name].ptr, 0, sizes[name],
                                   producer.handle)
                env.busy(producer.handle)
                cuda.cuda_call("cudaMemcpyAsync", buffers["image"].ptr, buffers["src"].ptr,
                               batch.nbytes, kind, producer.handle)
                stream = producer
                if case.startswith("another"):
                    event.record(producer.handle)
                    event.wait_on(consumer.handle)
                    stream = consumer
                seg.run_device((buffers["image"].ptr, sizes["image"]),
                               {"logits": (buffers["logits"].ptr, sizes["logits"]),
                                "labels": buffers["labels"].ptr},
                               batch=BATCH, stream=stream.handle)
                stream.synchronize()
                got = {}
                for name in ("logits", "labels"):
                    host = np.empty(seg.output_shape(name, BATCH), seg.output_dtype(name))
                    cuda.copy_async(host.ctypes.data, buffers[name].ptr, host.nbytes, False,
                                    stream.handle)
                    stream.synchronize()
                    got[name] = host
                same(got, batch, case)
                results.append(case)
        finally:
            for buffer in buffers.values():
                buffer.free()
            event.destroy()
            producer.destroy()
            consumer.destroy()
    return "(address, nbytes) and bare addresses, on " + " and on ".join(results)


PROTOCOLS = {"DLPack": lambda lib, x: DLPackOnly(x),
             "CUDA array interface": lambda lib, x: lib.cai_only(x),
             "own arrays": lambda lib, x: x}


def ordered_runs(env: Env, library: str, protocol: str) -> str:
    """Write the input on a producer stream behind ~50 ms of work, then run_device on the
    runner's stream, a caller's stream and the default stream; the results must be the
    producer's data (a consumer that does not wait for the producer reads zeros)."""
    env.need_gpu()
    lib = env.library(library)
    wrap = PROTOCOLS[protocol]
    done = []
    with env.open() as seg:
        for i, consumer in enumerate(("runner stream", "caller stream", "default stream")):
            batch = batch_of(BATCH, 50 + i)
            same(seg.run(batch), batch, "warm-up")
            source = lib.upload(batch)
            producer = lib.stream()
            caller = lib.stream() if consumer == "caller stream" else None
            with lib.current(producer):
                image = lib.empty(batch.shape, np.float32)
                outputs = {n: lib.empty(seg.output_shape(n, BATCH), seg.output_dtype(n))
                           for n in ("logits", "labels")}
                env.busy(lib.handle(producer))
                lib.copy(image, source)
                handle = None if consumer == "runner stream" else \
                    lib.handle(caller) if caller is not None else lib.default_handle()
                seg.run_device(wrap(lib, image), {n: wrap(lib, v) for n, v in outputs.items()},
                               stream=handle)
            if handle is not None:
                cuda.synchronize_stream(handle)
            same({n: lib.download(v) for n, v in outputs.items()}, batch,
                 f"{protocol} on the {consumer}")
            lib.synchronize(producer)
            done.append(consumer if handle is None else f"{consumer} (0x{handle:x})")
    return f"{lib.name} {protocol}: right results on the " + ", ".join(done)


def misaligned_refused(env: Env, library: str) -> str:
    env.need_gpu()
    lib = env.library(library)
    with env.open() as seg:
        image = lib.misaligned((BATCH, HEIGHT, WIDTH, 3), np.float32)
        logits = lib.empty(seg.output_shape("logits", BATCH), np.float32)
        refusals = []
        for protocol, wrap in PROTOCOLS.items():
            try:
                seg.run_device(wrap(lib, image), {"logits": wrap(lib, logits)})
            except BadInputError as exc:
                expect("256-byte aligned" in exc.one_line(), exc.one_line())
                refusals.append(protocol)
                continue
            raise AssertionError(f"a view 4 bytes into an allocation was accepted over "
                                 f"{protocol}")
    return f"{lib.name} x[1:]-style view refused over {', '.join(refusals)}"


def library_checks(library: str) -> None:
    for protocol in PROTOCOLS:
        check(f"{library}: run_device over {protocol}, producer/consumer streams")(
            lambda env, protocol=protocol: ordered_runs(env, library, protocol))
    check(f"{library}: a misaligned view is refused")(
        lambda env: misaligned_refused(env, library))


for _library in ("simulated arrays", "PyTorch", "CuPy"):
    library_checks(_library)


@check("TensorRT's refusal of an address is an error, not a stale binding")
def check_refused_address(env: Env) -> str:
    env.need_gpu()
    with env.open() as seg:
        runner = seg.runner
        batch = batch_of(BATCH, 60)
        same(seg.run(batch), batch, "warm-up")
        buffers = [cuda.DeviceBuffer() for _ in range(2)]
        try:
            for buffer in buffers:
                buffer.ensure(batch.nbytes + 256)
            image = TensorRef(buffers[0].ptr + 4, batch.shape, np.dtype(np.float32), "cuda")
            logits = TensorRef(buffers[1].ptr, batch.shape, np.dtype(np.float32), "cuda")
            try:
                runner.run_device(image, {"logits": logits}, BATCH, None)
            except BadInputError as exc:
                expect("refused" in exc.one_line(), exc.one_line())
            else:
                raise AssertionError("an unaligned address was bound")
            refused = [c for c in runner.context.address_calls if not c[2]]
            expect(refused and refused[-1][1] == image.ptr, f"refusals seen: {refused}")
            same(seg.run(batch), batch, "run() after the refusal")
        finally:
            for buffer in buffers:
                buffer.free()
    return "set_tensor_address returned False -> BadInputError; the next run is right"


@check("memory on another GPU is refused")
def check_device_id(env: Env) -> str:
    env.need_gpu()
    with env.open() as seg:
        buffer = cuda.DeviceBuffer()
        try:
            buffer.ensure(batch_of(BATCH, 0).nbytes)
            shape = (BATCH, HEIGHT, WIDTH, 3)
            here = TensorRef(buffer.ptr, shape, np.dtype(np.float32), "cuda", 0)
            there = TensorRef(buffer.ptr, shape, np.dtype(np.float32), "cuda", 1)
            for refs in ((there, {"logits": here}), (here, {"logits": there})):
                try:
                    seg.runner.run_device(*refs, BATCH, None)
                except BadInputError as exc:
                    expect("memory on GPU 0" in exc.one_line(), exc.one_line())
                    continue
                raise AssertionError("memory said to be on GPU 1 was accepted")
        finally:
            buffer.free()
    return "inputs and outputs labelled GPU 1 refused by a GPU-0 runner"


@check("close() after an asynchronous run_device waits for it")
def check_close(env: Env) -> str:
    env.need_gpu()
    seg = env.open()
    buffers = {n: cuda.DeviceBuffer() for n in ("image", "logits")}
    stream = cuda.Stream()
    try:
        batch = batch_of(BATCH, 70)
        same(seg.run(batch), batch, "warm-up")
        for buffer in buffers.values():
            buffer.ensure(batch.nbytes)
        cuda.copy_async(buffers["image"].ptr, batch.ctypes.data, batch.nbytes, True,
                        stream.handle)
        env.busy(stream.handle)
        seg.run_device(buffers["image"].ptr, {"logits": buffers["logits"].ptr}, batch=BATCH,
                       stream=stream.handle)  # labels go to the runner's own buffer
        seg.close()
        idle = cuda.runtime_module().cudaStreamQuery(stream.handle)[0]
        expect(idle == cuda.runtime_module().cudaError_t.cudaSuccess,
               f"the caller's stream still busy after close(): {idle}")
        host = np.empty_like(batch)
        cuda.copy_async(host.ctypes.data, buffers["logits"].ptr, host.nbytes, False,
                        stream.handle)
        stream.synchronize()
        same({"logits": host}, batch, "after close()")
    finally:
        seg.close()
        for buffer in buffers.values():
            buffer.free()
        stream.destroy()
    return "the caller's stream was idle when close() returned; outputs intact"


def floors(env: Env, name: str) -> str:
    env.need_gpu()
    if env.simulate:
        raise Skip("needs a real GPU (simulated runtime)")
    lib = env.library(name)
    import attention_gpu

    args = attention_gpu.arguments(["--iterations", "10", "--repeats", "5"])
    if name == "PyTorch":
        results = attention_gpu.bench_torch(lib.torch, args)
    else:
        try:
            results = attention_gpu.bench_cupy(lib.cupy, args)
        except Exception as exc:
            if "nvrtc" not in f"{type(exc).__name__} {exc}".lower():
                raise
            raise Skip(f"CuPy cannot compile kernels here (no NVRTC: {exc})"[:200]) from exc
    env.floors[name] = results
    summary = []
    for entry in results["core"]:
        timed = {form: t for form, t in entry["forms"].items() if "median_ms" in t}
        expect(timed, f"{entry['dtype']} {entry['feature_map']}: no form ran "
               f"({entry['forms']})")
        form, best = min(timed.items(), key=lambda item: item[1]["median_ms"])
        summary.append(f"{entry['dtype']} {entry['feature_map']} {form} "
                       f"{best['median_ms']} ms ({best['pct_of_floor']}% of floor)")
    return f"copy {results['bandwidth']['gbps']} GB/s; " + "; ".join(summary)


check("attention-core floors: PyTorch")(lambda env: floors(env, "PyTorch"))
check("attention-core floors: CuPy")(lambda env: floors(env, "CuPy"))


# ------------------------------------------------------------------ running them

def load_libraries(env: Env) -> None:
    if env.simulate:
        import cuda_sim

        env.libraries["simulated arrays"] = cuda_sim.SimArrays(cuda.runtime_module())
        for name in ("PyTorch", "CuPy"):
            env.libraries[name] = "needs a real GPU (simulated runtime)"
        return
    for name, module, adapter in (("PyTorch", "torch", TorchArrays),
                                  ("CuPy", "cupy", CupyArrays)):
        try:
            imported = importlib.import_module(module)
            library = adapter(imported)
            if module == "torch" and not imported.cuda.is_available():
                raise RuntimeError("torch.cuda.is_available() is False")
            if module == "cupy":
                imported.cuda.runtime.getDeviceCount()
            env.libraries[name] = library
        except Exception as exc:
            env.libraries[name] = f"{module} not usable ({type(exc).__name__}: {exc})"[:200]


def run_checks(env: Env, only: str | None) -> list[Result]:
    results = []
    for name, function in CHECKS:
        if only and only not in name:
            continue
        start = time.perf_counter()
        try:
            status, reason = "passed", function(env)
        except Skip as exc:
            status, reason = "skipped", str(exc)
        except Exception as exc:
            status = "failed"
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{type(exc).__name__}: {exc} [{Path(where.filename).name}:{where.lineno}]"
            if not isinstance(exc, AssertionError):  # a check's own verdict is its line
                print("".join(traceback.format_exception(exc, limit=-4)), file=sys.stderr)
        reason = " ".join(str(reason).split())
        result = Result(name, status, reason, round(time.perf_counter() - start, 3))
        label = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[status]
        print(f"{label}  {name}: {reason}", flush=True)
        results.append(result)
    return results


def tensorrt_here() -> dict[str, bool]:
    """Whether a real TensorRT is importable (asked before the stand-in is installed)."""
    return {m: importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_lean")}


def machine(env: Env, found: dict[str, bool]) -> dict:
    versions = {}
    for package in ("cuda-bindings", "cuda-python", "numpy", "onnxruntime"):
        with contextlib.suppress(Exception):
            versions[package] = importlib.metadata.version(package)
    for name, adapter in env.libraries.items():
        versions[name] = getattr(adapter, "version", adapter)
    return {"python": platform.python_version(), "versions": versions,
            "tensorrt_importable": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the results as JSON to PATH (default: none)")
    parser.add_argument("--no-floors", action="store_true",
                        help="skip the PyTorch/CuPy attention-core floors (default: run them)")
    parser.add_argument("--only", metavar="TEXT",
                        help="run only the checks whose name contains TEXT (default: all)")
    parser.add_argument("--simulate", action="store_true",
                        help="run on tests/cuda_sim.py's simulated runtime instead of "
                             "cuda-python (no GPU; checks this script, not CUDA; default off)")
    parser.add_argument("--timeout", type=float, default=240.0, metavar="SECONDS",
                        help="dump every thread's stack and exit 1 if still running after "
                             "this long (default: 240)")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(argv), simulate=True, no_floors=True)
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    where = "on the simulated runtime (no GPU, no CUDA)" if args.simulate \
        else "on a real GPU through cuda-python"
    statement = NOT_TENSORRT.format(where=where[0].upper() + where[1:])
    print(statement, flush=True)
    found = tensorrt_here()
    with contextlib.ExitStack() as stack:
        if args.simulate:
            import cuda_sim

            stack.enter_context(cuda_sim.simulated())
        stack.enter_context(tensorrt_standin.installed())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check-")))
        env = Env(args.simulate, folder)
        stack.callback(env.close)
        load_libraries(env)
        facts = machine(env, found)
        print("Here: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
              + "; importable, not used (the stand-in replaces tensorrt in this process): "
              + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in found.items()), flush=True)
        only = args.only
        if args.no_floors:
            CHECKS[:] = [(n, f) for n, f in CHECKS if not n.startswith("attention")]
        if not args.simulate:  # PyTorch and CuPy play the simulated arrays' part
            CHECKS[:] = [(n, f) for n, f in CHECKS if not n.startswith("simulated arrays")]
        results = run_checks(env, only)
    faulthandler.cancel_dump_traceback_later()
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
    if env.device is None:
        statement = "TensorRT itself did NOT run, and neither did the CUDA layer: no usable GPU."
    print(statement)
    if args.json:
        from ocr_deploy.files import write_bytes_atomic

        report = {"tensorrt_ran": False, "statement": statement, "simulated": args.simulate,
                  "device": env.device, "machine": facts, **counts,
                  "checks": [asdict(r) for r in results], "attention_floors": env.floors}
        write_bytes_atomic(args.json, (json.dumps(report, indent=2, default=str) + "\n")
                           .encode())
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    print(line + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
