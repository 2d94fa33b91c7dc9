"""cuda-python helpers for the backends that run on NVIDIA GPUs: checked calls, owning
buffers, streams, events and CUDA graphs.

Every CUDA runtime call goes through ``cuda_call(name, *args)``, which turns an error code
into a ``CudaError`` naming the call. cuda-python imports without a GPU, but nothing here
has run on one yet: this module is written against cuda-python's documented runtime API
(``cuda.bindings.runtime``, or ``cuda.cudart`` in releases before 12.6).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

import numpy as np

from ocr_deploy.errors import BadInputError, CudaError, CudaMemoryError


@functools.cache
def runtime_module():
    """The cuda-python runtime bindings; a clear error when cuda-python is missing."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise BadInputError(None, "cuda-python (the 'tensorrt' extra) to be installed",
                                f"an import error ({exc})",
                                "install it with: pip install 'ocr-deploy[tensorrt]'"
                                ) from exc
    return runtime


def cuda_call(name: str, *args):
    """Call ``cudart.<name>(*args)``; raise ``CudaError`` naming the call on failure.

    Returns the call's results after the error code: nothing, one value, or a tuple.
    """
    rt = runtime_module()
    result = getattr(rt, name)(*args)
    error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if error != rt.cudaError_t.cudaSuccess:
        _, text = rt.cudaGetErrorName(error)
        label = text.decode() if isinstance(text, bytes) else str(error)
        if label == "cudaErrorMemoryAllocation":
            raise CudaMemoryError(None, f"GPU memory for {name}", f"CUDA error {label}",
                                  "give a smaller --memory-budget or batch, or free GPU "
                                  "memory (nvidia-smi)")
        raise CudaError(None, f"{name} to succeed", f"CUDA error {label} ({int(error)})",
                        "check the GPU, its driver and free memory (nvidia-smi)")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_info(device_id: int = 0) -> dict:
    """Name and compute capability (``"8.9"``) of a GPU."""
    props = cuda_call("cudaGetDeviceProperties", device_id)
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
    return {"gpu_name": name.rstrip("\0").strip(),
            "compute_capability": f"{props.major}.{props.minor}"}


def memory_used_mib(device_id: int = 0) -> float:
    """Memory in use on the GPU (all processes), in MiB."""
    cuda_call("cudaSetDevice", device_id)
    free, total = cuda_call("cudaMemGetInfo")
    return (total - free) / 2**20


class DeviceBuffer:
    """Device memory that grows on demand and is freed once."""

    ALLOCATE, RELEASE = "cudaMalloc", "cudaFree"

    def __init__(self):
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when the buffer moved (reallocated)."""
        if nbytes <= self.nbytes:
            return False
        self.free()
        self.ptr = int(cuda_call(self.ALLOCATE, nbytes))
        self.nbytes = nbytes
        return True

    def free(self) -> None:
        if self.ptr:
            cuda_call(self.RELEASE, self.ptr)
        self.ptr, self.nbytes = 0, 0


class PinnedBuffer(DeviceBuffer):
    """Page-locked host memory (``cudaMallocHost``), viewed as NumPy arrays."""

    ALLOCATE, RELEASE = "cudaMallocHost", "cudaFreeHost"

    def view(self, shape: tuple, dtype) -> np.ndarray:
        """A NumPy array over the first bytes of the buffer (no copy)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = (ctypes.c_ubyte * nbytes).from_address(self.ptr)
        return np.frombuffer(raw, dtype).reshape(shape)


class Stream:
    """A CUDA stream owned by one execution context."""

    def __init__(self):
        self.handle = int(cuda_call("cudaStreamCreate"))

    def synchronize(self) -> None:
        cuda_call("cudaStreamSynchronize", self.handle)

    def destroy(self) -> None:
        if self.handle:
            cuda_call("cudaStreamDestroy", self.handle)
        self.handle = 0


class Event:
    """A timing-free CUDA event, used to order work across streams."""

    def __init__(self):
        flags = runtime_module().cudaEventDisableTiming
        self.handle = int(cuda_call("cudaEventCreateWithFlags", flags))

    def record(self, stream: int) -> None:
        cuda_call("cudaEventRecord", self.handle, stream)

    def wait_on(self, stream: int) -> None:
        """Make ``stream`` wait until the work recorded before this event is done."""
        cuda_call("cudaStreamWaitEvent", stream, self.handle, 0)

    def synchronize(self) -> None:
        """Wait on the host until the work recorded before this event is done."""
        cuda_call("cudaEventSynchronize", self.handle)

    def done(self) -> bool:
        """Whether the work recorded before this event is done (without waiting)."""
        rt = runtime_module()
        result = rt.cudaEventQuery(self.handle)
        error = result[0] if isinstance(result, tuple) else result
        if error == rt.cudaError_t.cudaErrorNotReady:
            return False
        cuda_call("cudaEventQuery", self.handle)  # raises for any other error
        return True

    def destroy(self) -> None:
        if self.handle:
            cuda_call("cudaEventDestroy", self.handle)
        self.handle = 0


class CudaGraph:
    """The kernels that ``enqueue(stream)`` launches, captured once and replayed.

    A failure while capturing ends the capture (so the stream stays usable) and re-raises
    the first error; the caller can then fall back to plain enqueues, as trtexec does.
    """

    def __init__(self, stream: int, enqueue):
        mode = runtime_module().cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call("cudaStreamBeginCapture", stream, mode)
        try:
            enqueue(stream)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the first error, not this one
                cuda_call("cudaGraphDestroy", cuda_call("cudaStreamEndCapture", stream))
            raise
        graph = cuda_call("cudaStreamEndCapture", stream)
        try:
            self._exec = cuda_call("cudaGraphInstantiate", graph, 0)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the instantiation error
                cuda_call("cudaGraphDestroy", graph)
            raise
        self._graph = graph

    def launch(self, stream: int) -> None:
        cuda_call("cudaGraphLaunch", self._exec, stream)

    def destroy(self) -> None:
        if self._exec is not None:
            cuda_call("cudaGraphExecDestroy", self._exec)
            cuda_call("cudaGraphDestroy", self._graph)
        self._exec = self._graph = None


def synchronize_stream(stream: int) -> None:
    """Wait for ``stream`` (a CUDA stream handle) to finish its queued work."""
    cuda_call("cudaStreamSynchronize", stream)


def copy_async(dst: int, src: int, nbytes: int, to_device: bool, stream: int) -> None:
    """Queue a host-to-device (``to_device``) or device-to-host copy on ``stream``."""
    kinds = runtime_module().cudaMemcpyKind
    kind = kinds.cudaMemcpyHostToDevice if to_device else kinds.cudaMemcpyDeviceToHost
    cuda_call("cudaMemcpyAsync", dst, src, nbytes, kind, stream)
