"""The TensorRT runner on cuda-python: one execution context, one stream, buffers kept per
shape.

Written against TensorRT 10.x/11.x's documented Python API (``deserialize_cuda_engine``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and cuda-python's
runtime API. **It has not been run yet**: the development machines have no GPU and
TensorRT does not install there; ``tests/test_runtime_tensorrt.py`` exercises it where
both exist.

- Device buffers are allocated once and re-allocated only when a larger batch needs more;
  host staging buffers are pinned (``cudaMallocHost``) so copies run asynchronously.
- One lock guards the single execution context: concurrent callers are served one at a
  time and get exactly the results of serial calls (open one Segmenter per GPU stream to
  run several at once).
- ``cuda_graph=True`` captures the enqueued kernels after one ordinary run and replays them
  (``cudaGraphLaunch``); one graph per execution context, recaptured when the input shape
  changes or buffers move. If capturing fails, it warns once and falls back to ordinary
  enqueues, as trtexec does.
- An engine built for a DLA core (the sidecar's ``dla_core``) is deserialised with
  ``Runtime.DLA_core`` set to that core, as trtexec does, and runs without CUDA graphs:
  trtexec turns them off for DLA ("CUDA graphs and DLA offloading are not simultaneously
  supported", NVIDIA/TensorRT#3524), so ``cuda_graph=True`` is dropped with a warning.
- One deserialised engine per file (and GPU and DLA core) per process, shared by every
  runner on it: each runner has its own execution context (TensorRT allows several on one
  engine), so weights are held once however many Segmenters run it. ``info()`` reports the
  device memory each context allocates (``device_memory_size_v2``: for the profile's
  maximum shapes).
- ``run_device`` drops a captured CUDA graph on every call (it binds the caller's
  addresses, which a replay would not see), and an asynchronous ``run_device`` keeps the
  callers' tensor owners (DLPack/CUDA-array-interface objects) alive until its queued work
  is known to be done, so an allocator cannot reuse their memory mid-inference.
- Caller memory given to ``run_device`` must be 256-byte aligned (TensorRT's rule for
  tensor addresses, checked by ``tensor_ref``) and on this runner's GPU; an address
  TensorRT refuses is an error, never silently left bound to the previous buffer.
- ``close()``, and any re-allocation of the runner's own buffers (which ``run_device`` binds
  to the outputs the caller did not ask for), first wait for work still queued on a caller's
  stream.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocr_deploy import cuda
from ocr_deploy.backends.runner import Runner
from ocr_deploy.backends.tensorrt.library import (
    capability,
    import_tensorrt,
    release,
    shared_logger,
)
from ocr_deploy.backends.tensors import TensorRef
from ocr_deploy.errors import BadInputError

ADDRESS_ALIGNMENT = 256  # bytes: "The pointer must have at least 256-byte alignment"


def context_memory(engine) -> int:
    """Device memory an execution context of ``engine`` allocates, in bytes
    (``device_memory_size_v2``; ``device_memory_size`` before TensorRT 10.1, removed in 11)."""
    size = getattr(engine, "device_memory_size_v2", None)
    return int(size if size is not None else engine.device_memory_size)


def check_compatibility(path: object, sidecar: dict, tensorrt_version: str, device: dict) -> None:
    """Refuse an engine whose sidecar says it was built for another TensorRT or GPU.

    Reads the sidecar's ``tensorrt_version``, ``compute_capability`` and ``gpu_name``; a
    different GPU model of the same compute capability only warns (TensorRT loads it, but
    its kernels were tuned for the other model).
    """
    built = sidecar.get("tensorrt_version")
    here_gpu = f"{device['gpu_name']} (compute capability {device['compute_capability']})"
    built_gpu = f"{sidecar.get('gpu_name', 'unknown GPU')} (compute capability " \
                f"{capability(sidecar.get('compute_capability')) or 'unknown'})"
    if built and release(built) != release(tensorrt_version):
        raise BadInputError(path, f"an engine built with this machine's TensorRT "
                            f"{tensorrt_version}", f"one built with TensorRT {built} on "
                            f"{built_gpu}", "rebuild the engine here with ocr-build-engine: "
                            "engines are tied to one TensorRT version and one GPU")
    built_for = capability(sidecar.get("compute_capability"))
    if built_for and built_for != device["compute_capability"]:
        raise BadInputError(path, f"an engine built for this GPU, {here_gpu}",
                            f"one built for {built_gpu}",
                            "rebuild the engine on this machine with ocr-build-engine")
    if sidecar.get("gpu_name") and sidecar["gpu_name"] != device["gpu_name"]:
        warnings.warn(f"{path}: engine built on {built_gpu}, running on {here_gpu}: it loads, "
                      "but rebuild it here for the best speed", stacklevel=3)


class _SharedEngines:
    """The engines this process has deserialised, one per (file, GPU, DLA core), each with
    the Runtime that made it and the number of runners using it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, list] = {}  # key -> [engine, runtime, users]

    @staticmethod
    def key(path: Path, device_id: int, dla_core) -> tuple:
        stat = path.stat()
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns, device_id, dla_core

    def acquire(self, key: tuple, load):
        """The engine for ``key``, made by ``load() -> (engine, runtime)`` the first time."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [*load(), 0]
            entry[2] += 1
            return entry[0]

    def release(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


ENGINES = _SharedEngines()


class TensorRTRunner(Runner):
    """A deserialised TensorRT engine with one execution context and one CUDA stream."""

    name = "tensorrt"
    device = "cuda"
    address_alignment = ADDRESS_ALIGNMENT

    def __init__(self, path: Path, sidecar: dict, device_id: int = 0, cuda_graph: bool = False):
        trt = import_tensorrt(path)
        self.device_id = device_id
        cuda.cuda_call("cudaSetDevice", device_id)
        self.gpu = cuda.device_info(device_id)
        check_compatibility(path, sidecar, trt.__version__, self.gpu)
        self._trt = trt
        self._logger = shared_logger()  # cudaSetDevice first: Runtime needs a device
        dla_core = sidecar.get("dla_core")
        self._engine_key = ENGINES.key(Path(path), device_id, dla_core)
        self.engine = ENGINES.acquire(self._engine_key,
                                      lambda: self._deserialize(Path(path), sidecar, dla_core))
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names
                  if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if self.context is None or len(inputs) != 1:
            ENGINES.release(self._engine_key)
            if self.context is None:
                raise BadInputError(path, "an execution context for the engine",
                                    "none (out of GPU memory?)", "free GPU memory and retry")
            raise BadInputError(path, "an engine with one image input", f"inputs {inputs}",
                                "build it from an ONNX exported by ocr-export")
        self.input_name = inputs[0]
        self.output_names = tuple(n for n in names if n != self.input_name)
        self._names = names
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        self.input_dtype = self._dtypes[self.input_name]
        batch_dim = self._shapes[self.input_name][0]
        if batch_dim == -1:  # the profile's (min, opt, max) input shapes
            profile = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(profile[0][0]), int(profile[2][0])
        else:
            self.min_batch = self.max_batch = int(batch_dim)
        self._stream = cuda.Stream()
        self.stream = self._stream.handle
        self._event = cuda.Event()
        self._event_pending = False  # work queued on a caller's stream that ours must wait for
        self._device = {n: cuda.DeviceBuffer() for n in names}
        self._host = {n: cuda.PinnedBuffer() for n in names}
        self._graph: cuda.CudaGraph | None = None
        self._graph_shape: tuple[int, ...] = ()
        self._use_graphs = cuda_graph
        if cuda_graph and dla_core is not None:
            warnings.warn(f"{path}: a DLA engine runs without CUDA graphs (CUDA graphs and "
                          "DLA offloading are not supported together)", stacklevel=3)
            self._use_graphs = False
        self._held: list = []  # callers' tensor owners that queued work still uses
        self._lock = threading.Lock()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self._shapes[self.input_name][1:])

    def output_shape(self, name: str, batch: int) -> tuple[int, ...]:
        return (batch, *self._shapes[name][1:])

    def output_dtype(self, name: str) -> np.dtype:
        return self._dtypes[name]

    def run_batch(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        stream = self._stream.handle
        with self._lock:
            cuda.cuda_call("cudaSetDevice", self.device_id)
            shapes = self._bind_own_buffers(batch.shape)
            host_input = self._host[self.input_name].view(batch.shape, batch.dtype)
            np.copyto(host_input, batch)
            cuda.copy_async(self._device[self.input_name].ptr, self._host[self.input_name].ptr,
                            batch.nbytes, True, stream)
            self._enqueue(batch.shape, stream)
            for name in outputs:
                nbytes = int(np.prod(shapes[name])) * self._dtypes[name].itemsize
                cuda.copy_async(self._host[name].ptr, self._device[name].ptr, nbytes, False,
                                stream)
            self._stream.synchronize()
            self._event_pending = False
            self._held.clear()  # the stream waited for the caller's work first
            return {name: self._host[name].view(shapes[name], self._dtypes[name]).copy()
                    for name in outputs}

    def run_device(self, input_ref: TensorRef, output_refs: dict[str, TensorRef], batch: int,
                   stream: int | None) -> None:
        for ref in (input_ref, *output_refs.values()):
            if ref.device != "cuda":
                raise BadInputError(None, "CUDA device memory for a TensorRT engine",
                                    "host memory", "copy the data to the GPU first, or use "
                                    "predict()/run() with NumPy arrays")
            if ref.device_id != self.device_id:
                raise BadInputError(None, f"memory on GPU {self.device_id} (the engine's)",
                                    f"memory on GPU {ref.device_id}",
                                    "copy it to that GPU, or open the Segmenter with "
                                    f"device_id={ref.device_id}")
        handle = self._stream.handle if stream is None else int(stream)
        with self._lock:
            cuda.cuda_call("cudaSetDevice", self.device_id)
            shape = tuple(input_ref.shape)
            self._drop_graph()  # the caller's addresses are bound: a replay would not see them
            self._set_shape(shape)
            self._bind(self.input_name, input_ref.ptr)
            for name in self.output_names:  # every output needs an address; unasked ones: ours
                if name in output_refs:
                    self._bind(name, output_refs[name].ptr)
                else:
                    shape = tuple(self.context.get_tensor_shape(name))
                    self._grow(name, int(np.prod(shape)) * self._dtypes[name].itemsize)
                    self._bind(name, self._device[name].ptr)
            if self._event_pending:
                self._event.wait_on(handle)
            if self._event_pending and self._event.done():
                self._held.clear()  # earlier queued work has finished
            self._execute(handle)
            if stream is None:
                self._stream.synchronize()
                self._event_pending = False
                self._held.clear()
            else:  # asynchronous on the caller's stream; later work here waits for it
                self._event.record(handle)
                self._event_pending = True
                self._held += [input_ref, *output_refs.values()]  # alive until it is done

    def info(self) -> dict:
        return {"backend": self.name, "device": self.device, "tensorrt": self._trt.__version__,
                **self.gpu, "cuda_graph": self._use_graphs,
                "context_device_memory_bytes": context_memory(self.engine)}

    def close(self) -> None:
        with self._lock:
            self._wait_pending()
            self._drop_graph()
            for buffer in (*self._device.values(), *self._host.values()):
                buffer.free()
            self._event.destroy()
            self._stream.destroy()
            self.context = self.engine = None
            ENGINES.release(self._engine_key)

    def _deserialize(self, path: Path, sidecar: dict, dla_core):
        """``(engine, runtime)``: the runtime must outlive the engine it made."""
        runtime = self._trt.Runtime(self._logger)
        if dla_core is not None:
            runtime.DLA_core = int(dla_core)
        mark = self._logger.errors.mark()
        try:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        except Exception as exc:  # some TensorRT versions raise instead of returning None
            self._logger.errors.record(str(exc))
            engine = None
        if engine is None:
            reason = self._logger.errors.since(mark) or "no reason given"
            raise BadInputError(path, f"an engine that TensorRT {self._trt.__version__} can "
                                f"load on {self.gpu['gpu_name']}",
                                f"deserialisation failed (built with TensorRT "
                                f"{sidecar.get('tensorrt_version', '?')} on "
                                f"{sidecar.get('gpu_name', '?')}: {reason[:300]})",
                                "rebuild the engine on this machine with ocr-build-engine")
        return engine, runtime

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        """The input's full shape (an end-to-end engine's image height and width vary)."""
        if not self.context.set_input_shape(self.input_name, shape):
            low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(
                self.input_name, 0))
            raise BadInputError(None, f"an input from {list(low)} to {list(high)} (the "
                                "engine's optimisation profile)", f"shape {list(shape)}",
                                "split the batch, or rebuild the engine with a larger profile")

    def _grow(self, name: str, nbytes: int) -> None:
        if nbytes > self._device[name].nbytes:
            self._wait_pending()  # queued run_device work may still write the old buffer
        if self._device[name].ensure(nbytes):  # moved: a captured graph points at old memory
            self._drop_graph()

    def _wait_pending(self) -> None:
        """Wait on the host for ``run_device`` work still queued on a caller's stream."""
        if self._event_pending:
            self._event.synchronize()
            self._event_pending = False
        self._held.clear()

    def _bind_own_buffers(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self._set_shape(tuple(shape))
        shapes = {}
        for name in self._names:
            shapes[name] = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shapes[name])) * self._dtypes[name].itemsize
            self._grow(name, nbytes)
            self._host[name].ensure(nbytes)
            self._bind(name, self._device[name].ptr)
        return shapes

    def _bind(self, name: str, address: int) -> None:
        """Bind ``name`` to ``address``; TensorRT's refusal (``False``) is an error, since
        the previous address would otherwise stay bound."""
        if not self.context.set_tensor_address(name, address):
            raise BadInputError(None, f"an address TensorRT accepts for '{name}' (256-byte "
                                "aligned device memory)", f"0x{address:x}, refused",
                                "pass a fresh allocation (not a slice of one)")

    def _enqueue(self, shape: tuple[int, ...], stream: int) -> None:
        if self._event_pending:
            self._event.wait_on(stream)
        if not self._use_graphs:
            self._execute(stream)
            return
        if self._graph is None or self._graph_shape != shape:
            self._drop_graph()
            # after a shape change TensorRT may do setup work in the first enqueue, which
            # must not be captured: run once ordinarily, then capture
            self._execute(stream)
            cuda.synchronize_stream(stream)
            try:
                self._graph = cuda.CudaGraph(stream, self._execute)
            except cuda.CudaError as exc:
                warnings.warn(f"CUDA graph capture failed ({exc.found}); running without "
                              "CUDA graphs", stacklevel=2)
                self._use_graphs = False
                return
            self._graph_shape = shape
        self._graph.launch(stream)

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.destroy()
        self._graph = None

    def _execute(self, stream: int) -> None:
        mark = self._logger.errors.mark()
        if not self.context.execute_async_v3(stream):
            reason = self._logger.errors.since(mark) or "no reason given"
            raise cuda.CudaError(None, "execute_async_v3 to succeed",
                                 f"a failure ({reason[:300]})", "rerun with a smaller batch, "
                                 "or check the engine with trtexec")
