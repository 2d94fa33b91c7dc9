"""A SIMULATED CUDA runtime on host memory, for tests of the project's control flow: it is
not CUDA, and nothing that passes on it shows that CUDA code works on a GPU.

``SimulatedRuntime`` offers the calls of ``cuda.bindings.runtime`` that ``ocr_deploy.cuda``,
the TensorRT stand-in (``tensorrt_standin``) and ``benchmarks/gpu_check.py`` make, with
cuda-python's conventions: every call returns a tuple ``(cudaError_t, *values)``, enums
are required where cuda-python requires them, handles are objects that ``int()`` accepts.
It is strict where ordering bugs hide:

- Device memory is ctypes buffers (256-byte aligned). Asynchronous work (copies, event
  records, waits) is *deferred*: it runs only when a stream or event is synchronised, one
  stream at a time, so a consumer that does not wait for its producer reads stale data.
- ``cudaStreamWaitEvent`` runs the event's stream up to the record first, as a GPU would.
- Deferred work that touches freed memory, or memory outside any allocation, is a fault
  (``faults``) and makes later synchronisations fail with ``cudaErrorIllegalAddress``.
- Stream capture (thread-local mode) records work into a graph that ``cudaGraphLaunch``
  replays with the addresses it captured; an unsafe call on the capturing thread
  (``cudaMalloc``, a synchronisation, a synchronous copy) fails with
  ``cudaErrorStreamCaptureUnsupported`` and invalidates the capture.
- ``log`` records the calls that order work (synchronisations, frees) for tests to read.

``SimArrays`` is an array library on this runtime (device arrays with ``__dlpack__`` and
``__cuda_array_interface__``, a current stream), shaped like the PyTorch/CuPy adapters of
``gpu_check.py`` so that the same producer/consumer checks run here.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import itertools
import threading

import numpy as np
from array_views import CudaArrayInterfaceOnly

from ocr_deploy.backends.tensors import _DLDataType, _DLDevice, _DLManagedTensor

ALIGNMENT = 256
LEGACY = (0, 1, 2)  # the NULL stream, cudaStreamLegacy, cudaStreamPerThread: one stream here


class cudaError_t(enum.IntEnum):  # cuda-python's names, as the code under test uses them
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorNotReady = 600
    cudaErrorIllegalAddress = 700
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureIsolation = 905
    cudaErrorStreamCaptureWrongThread = 908


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaStreamCaptureStatus(enum.IntEnum):
    cudaStreamCaptureStatusNone = 0
    cudaStreamCaptureStatusActive = 1
    cudaStreamCaptureStatusInvalidated = 2


class _Handle:
    """An opaque handle, as cuda-python returns them (``int()`` gives the value)."""

    def __init__(self, value: int):
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.value:x}>"


class cudaStream_t(_Handle):
    pass


class cudaEvent_t(_Handle):
    pass


class cudaGraph_t(_Handle):
    pass


class cudaGraphExec_t(_Handle):
    pass


class SimulatedCudaError(Exception):
    """A call the simulation refuses (its error code travels in ``code``)."""

    def __init__(self, code: cudaError_t):
        super().__init__(code.name)
        self.code = code


class _Allocation:
    def __init__(self, nbytes: int, kind: str, device: int):
        self.raw = ctypes.create_string_buffer(nbytes + ALIGNMENT)
        base = ctypes.addressof(self.raw)
        self.ptr = base + (-base % ALIGNMENT)
        self.nbytes, self.kind, self.device, self.live = nbytes, kind, device, True


class _Op:
    """Deferred work on a stream: ``run()`` does it; ``seq`` orders it."""

    def __init__(self, seq: int, run, describe: str):
        self.seq, self.run, self.describe = seq, run, describe


class _Stream:
    def __init__(self, handle: int):
        self.handle = handle
        self.queue: list[_Op] = []
        self.last_seq = 0  # the newest op enqueued (what an event recorded now waits for)
        self.capture: _Capture | None = None
        self.live = True


class _Capture:
    def __init__(self, mode: cudaStreamCaptureMode):
        self.thread = threading.get_ident()
        self.mode = mode
        self.ops: list[tuple] = []  # (kind, args) replayed by a graph launch
        self.invalidated = False


class _Event:
    def __init__(self, handle: int):
        self.handle = handle
        self.stream: _Stream | None = None
        self.seq = 0
        self.synchronizations = 0
        self.live = True


class _Props:
    def __init__(self, name: bytes, major: int, minor: int):
        self.name, self.major, self.minor = name, major, minor


class SimulatedRuntime:
    """One simulated process-wide CUDA runtime; see the module docstring."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamCaptureStatus = cudaStreamCaptureStatus
    cudaEventDisableTiming = 2
    cudaStreamNonBlocking = 1
    __name__ = "cuda_sim (a simulated CUDA runtime on host memory)"

    def __init__(self, device_count: int = 2, gpu_name: str = "Simulated GPU (host memory)",
                 capability: tuple[int, int] = (9, 0)):
        self.device_count = device_count
        self.props = _Props(gpu_name.encode(), *capability)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._handles = itertools.count(0x1000, 0x100)
        self._allocations: dict[int, _Allocation] = {}
        self._streams: dict[int, _Stream] = {0: _Stream(0)}
        self._events: dict[int, _Event] = {}
        self._graphs: dict[int, list] = {}
        self._execs: dict[int, list] = {}
        self._device = threading.local()
        self._fail_next: dict[str, cudaError_t] = {}
        self.faults: list[str] = []
        self.log: list[tuple] = []  # (call, handle or address) of ordering-relevant calls

    # -- what tests read -------------------------------------------------------------------

    def fail_next(self, name: str, code: cudaError_t = cudaError_t.cudaErrorInvalidValue):
        """Make the next call of ``name`` fail with ``code``."""
        self._fail_next[name] = code

    def live_allocations(self, kind: str | None = None) -> list[int]:
        return [a.ptr for a in self._allocations.values()
                if a.live and (kind is None or a.kind == kind)]

    def live_graphs(self) -> int:
        return len(self._graphs) + len(self._execs)

    def pending(self, stream) -> int:
        """Ops still queued on ``stream`` (not yet run)."""
        return len(self._stream(stream).queue)

    def event(self, handle) -> _Event:
        return self._events[int(handle)]

    def __getattr__(self, name: str):
        if name.startswith("cuda"):
            raise AttributeError(f"the simulated runtime does not offer {name} (add it to "
                                 "tests/cuda_sim.py if the code under test needs it)")
        raise AttributeError(name)

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, name: str, body):
        with self._lock:
            failure = self._fail_next.pop(name, None)
            if failure is not None:
                return (failure, None)
            try:
                values = body()
            except SimulatedCudaError as exc:
                return (exc.code, None)
            return (cudaError_t.cudaSuccess, *values)

    def _stream(self, stream) -> _Stream:
        handle = 0 if stream is None else int(stream)
        found = self._streams.get(0 if handle in LEGACY else handle)
        if found is None or not found.live:
            raise SimulatedCudaError(cudaError_t.cudaErrorInvalidResourceHandle)
        return found

    def _unsafe(self) -> None:
        """A call that capture forbids on the capturing thread: invalidate and refuse."""
        me = threading.get_ident()
        refused = False
        for stream in self._streams.values():
            capture = stream.capture
            if capture and capture.mode != cudaStreamCaptureMode.cudaStreamCaptureModeRelaxed \
                    and (capture.thread == me or capture.mode
                         == cudaStreamCaptureMode.cudaStreamCaptureModeGlobal):
                capture.invalidated = refused = True
        if refused:
            raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureUnsupported)

    def _enqueue(self, stream: _Stream, kind: str, args: tuple) -> None:
        if stream.capture is not None:
            if stream.capture.thread != threading.get_ident() and stream.capture.mode != \
                    cudaStreamCaptureMode.cudaStreamCaptureModeRelaxed:
                stream.capture.invalidated = True
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureWrongThread)
            stream.capture.ops.append((kind, args))
            return
        seq = next(self._ids)
        stream.queue.append(_Op(seq, self._runner(kind, args), kind))
        stream.last_seq = seq

    def _runner(self, kind: str, args: tuple):
        if kind == "copy":
            return lambda: self._copy(*args)
        if kind == "memset":
            return lambda: self._memset(*args)
        if kind == "wait":
            stream, seq = args
            return lambda: self._drain(stream, seq)
        raise AssertionError(kind)

    def _drain(self, stream: _Stream, upto: int | None = None) -> None:
        """Run ``stream``'s queued ops in order, up to ``upto`` (a seq; None: all)."""
        while stream.queue and (upto is None or stream.queue[0].seq <= upto):
            stream.queue.pop(0).run()

    def _sticky(self) -> None:
        if self.faults:
            raise SimulatedCudaError(cudaError_t.cudaErrorIllegalAddress)

    def _find(self, ptr: int, nbytes: int) -> _Allocation | None:
        for allocation in self._allocations.values():
            if allocation.ptr <= ptr < allocation.ptr + max(allocation.nbytes, 1):
                return allocation
        return None

    def _side(self, ptr: int, nbytes: int, device: bool, when: str) -> bool:
        """Check one side of a copy; True if usable (else a refusal or a fault)."""
        allocation = self._find(ptr, nbytes)
        if allocation is None:  # pageable host memory
            return self._problem(when, f"0x{ptr:x} is not device memory") if device else True
        if (allocation.kind == "device") != device:
            return self._problem(when, f"0x{ptr:x} is {allocation.kind} memory, used as "
                                 f"{'device' if device else 'host'} memory")
        if not allocation.live:
            return self._problem(when, f"0x{ptr:x} was freed")
        if ptr + nbytes > allocation.ptr + allocation.nbytes:
            return self._problem(when, f"0x{ptr:x}+{nbytes} runs past its allocation "
                                 f"({allocation.nbytes} bytes)")
        return True

    def _problem(self, when: str, what: str) -> bool:
        if when == "enqueue":
            raise SimulatedCudaError(cudaError_t.cudaErrorInvalidValue)
        self.faults.append(what)
        return False

    def _kinds(self, kind) -> tuple[bool, bool]:
        if not isinstance(kind, cudaMemcpyKind):
            raise TypeError(f"Argument 'kind' is not instance of type (expected "
                            f"{cudaMemcpyKind}, got {type(kind)})")
        return {cudaMemcpyKind.cudaMemcpyHostToHost: (False, False),
                cudaMemcpyKind.cudaMemcpyHostToDevice: (True, False),
                cudaMemcpyKind.cudaMemcpyDeviceToHost: (False, True),
                cudaMemcpyKind.cudaMemcpyDeviceToDevice: (True, True),
                cudaMemcpyKind.cudaMemcpyDefault: (None, None)}[kind]

    def _copy(self, dst: int, src: int, nbytes: int, kind) -> None:
        dst_device, src_device = self._kinds(kind)
        if dst_device is None:
            dst_device, src_device = (self._is_device(p) for p in (dst, src))
        if self._side(dst, nbytes, dst_device, "run") and \
                self._side(src, nbytes, src_device, "run"):
            ctypes.memmove(dst, src, nbytes)

    def _memset(self, ptr: int, value: int, nbytes: int) -> None:
        if self._side(ptr, nbytes, True, "run"):
            ctypes.memset(ptr, value, nbytes)

    def _is_device(self, ptr: int) -> bool:
        allocation = self._find(ptr, 1)
        return allocation is not None and allocation.kind == "device"

    def _check_copy(self, dst, src, count, kind) -> tuple[int, int, int]:
        for value, what in ((dst, "dst"), (src, "src"), (count, "count")):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{what} must be an int here, found {type(value).__name__}")
        dst_device, src_device = self._kinds(kind)
        if dst_device is not None:
            self._side(int(dst), int(count), dst_device, "enqueue")
            self._side(int(src), int(count), src_device, "enqueue")
        return int(dst), int(src), int(count)

    # -- devices ---------------------------------------------------------------------------

    def cudaGetErrorName(self, error):
        return (cudaError_t.cudaSuccess, cudaError_t(error).name.encode())

    def cudaGetLastError(self):
        return (cudaError_t.cudaSuccess,)

    def cudaSetDevice(self, device: int):
        def body():
            if not isinstance(device, int) or not 0 <= device < self.device_count:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidDevice)
            self._device.id = device
            return ()
        return self._call("cudaSetDevice", body)

    def cudaGetDevice(self):
        return self._call("cudaGetDevice", lambda: (getattr(self._device, "id", 0),))

    def cudaGetDeviceProperties(self, device: int):
        def body():
            if not 0 <= device < self.device_count:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidDevice)
            return (self.props,)
        return self._call("cudaGetDeviceProperties", body)

    def cudaDriverGetVersion(self):
        return (cudaError_t.cudaSuccess, 13000)

    def cudaRuntimeGetVersion(self):
        return (cudaError_t.cudaSuccess, 13000)

    def cudaMemGetInfo(self):
        used = sum(a.nbytes for a in self._allocations.values()
                   if a.live and a.kind == "device")
        return (cudaError_t.cudaSuccess, (1 << 34) - used, 1 << 34)

    # -- memory ----------------------------------------------------------------------------

    def _malloc(self, name: str, size: int, kind: str):
        def body():
            if not isinstance(size, (int, np.integer)) or size < 0:
                raise TypeError(f"size must be a non-negative int, found {size!r}")
            self._unsafe()
            allocation = _Allocation(int(size), kind, getattr(self._device, "id", 0))
            self._allocations[allocation.ptr] = allocation
            return (allocation.ptr,)
        return self._call(name, body)

    def _free(self, name: str, ptr, kind: str):
        def body():
            if not ptr:
                return ()
            self._unsafe()
            allocation = self._allocations.get(int(ptr))
            if allocation is None or not allocation.live or allocation.kind != kind:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidValue)
            allocation.live = False  # kept: deferred work that still touches it faults
            self.log.append((name, int(ptr)))
            return ()
        return self._call(name, body)

    def cudaMalloc(self, size):
        return self._malloc("cudaMalloc", size, "device")

    def cudaFree(self, ptr):
        return self._free("cudaFree", ptr, "device")

    def cudaMallocHost(self, size):
        return self._malloc("cudaMallocHost", size, "pinned")

    def cudaFreeHost(self, ptr):
        return self._free("cudaFreeHost", ptr, "pinned")

    def cudaMemcpy(self, dst, src, count, kind):
        def body():
            args = self._check_copy(dst, src, count, kind)
            self._unsafe()
            for stream in list(self._streams.values()):  # synchronous: after all prior work
                self._drain(stream)
            self._copy(*args, kind)
            self._sticky()
            return ()
        return self._call("cudaMemcpy", body)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        def body():
            args = self._check_copy(dst, src, count, kind)
            target = self._stream(stream)
            if target.capture is not None and cudaMemcpyKind.cudaMemcpyDeviceToDevice != kind \
                    and not all(self._find(p, 1) for p in args[:2]):
                target.capture.invalidated = True  # pageable memory cannot be captured
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureUnsupported)
            self._enqueue(target, "copy", (*args, kind))
            return ()
        return self._call("cudaMemcpyAsync", body)

    def cudaMemsetAsync(self, ptr, value, count, stream):
        def body():
            if not all(isinstance(v, (int, np.integer)) for v in (ptr, value, count)):
                raise TypeError("cudaMemsetAsync(devPtr, int value, size_t count, stream)")
            self._side(int(ptr), int(count), True, "enqueue")
            self._enqueue(self._stream(stream), "memset", (int(ptr), int(value), int(count)))
            return ()
        return self._call("cudaMemsetAsync", body)

    # -- streams and events ----------------------------------------------------------------

    def cudaStreamCreate(self):
        return self.cudaStreamCreateWithFlags(0)

    def cudaStreamCreateWithFlags(self, flags: int):
        def body():
            handle = next(self._handles)
            self._streams[handle] = _Stream(handle)
            return (cudaStream_t(handle),)
        return self._call("cudaStreamCreateWithFlags", body)

    def cudaStreamDestroy(self, stream):
        def body():
            target = self._stream(stream)
            if target.handle == 0:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidResourceHandle)
            self._drain(target)  # CUDA finishes queued work of a destroyed stream
            target.live = False
            self.log.append(("cudaStreamDestroy", target.handle))
            return ()
        return self._call("cudaStreamDestroy", body)

    def cudaStreamSynchronize(self, stream):
        def body():
            target = self._stream(stream)
            if target.capture is not None:
                target.capture.invalidated = True
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureUnsupported)
            self._unsafe()
            self._drain(target)
            self.log.append(("cudaStreamSynchronize", target.handle))
            self._sticky()
            return ()
        return self._call("cudaStreamSynchronize", body)

    def cudaStreamQuery(self, stream):
        def body():
            if self._stream(stream).queue:
                raise SimulatedCudaError(cudaError_t.cudaErrorNotReady)
            return ()
        return self._call("cudaStreamQuery", body)

    def cudaDeviceSynchronize(self):
        def body():
            self._unsafe()
            for stream in list(self._streams.values()):
                self._drain(stream)
            self._sticky()
            return ()
        return self._call("cudaDeviceSynchronize", body)

    def cudaEventCreateWithFlags(self, flags: int):
        def body():
            if not isinstance(flags, int):
                raise TypeError(f"flags must be an int, found {type(flags).__name__}")
            handle = next(self._handles)
            self._events[handle] = _Event(handle)
            return (cudaEvent_t(handle),)
        return self._call("cudaEventCreateWithFlags", body)

    def cudaEventDestroy(self, event):
        def body():
            self._event(event).live = False
            self.log.append(("cudaEventDestroy", int(event)))
            return ()
        return self._call("cudaEventDestroy", body)

    def _event(self, event) -> _Event:
        found = self._events.get(int(event))
        if found is None or not found.live:
            raise SimulatedCudaError(cudaError_t.cudaErrorInvalidResourceHandle)
        return found

    def cudaEventRecord(self, event, stream):
        def body():
            target, found = self._stream(stream), self._event(event)
            if target.capture is not None:  # event nodes in graphs: not simulated
                target.capture.invalidated = True
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureUnsupported)
            found.stream, found.seq = target, target.last_seq
            return ()
        return self._call("cudaEventRecord", body)

    def cudaStreamWaitEvent(self, stream, event, flags: int):
        def body():
            target, found = self._stream(stream), self._event(event)
            if found.stream is None:
                return ()  # never recorded: nothing to wait for
            if target.capture is not None:  # an event from outside the capture
                target.capture.invalidated = True
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureIsolation)
            self._enqueue(target, "wait", (found.stream, found.seq))
            return ()
        return self._call("cudaStreamWaitEvent", body)

    def cudaEventSynchronize(self, event):
        def body():
            found = self._event(event)
            self._unsafe()
            if found.stream is not None:
                self._drain(found.stream, found.seq)
            found.synchronizations += 1
            self.log.append(("cudaEventSynchronize", found.handle))
            self._sticky()
            return ()
        return self._call("cudaEventSynchronize", body)

    def cudaEventQuery(self, event):
        def body():
            found = self._event(event)
            if found.stream is not None and any(op.seq <= found.seq
                                                for op in found.stream.queue):
                raise SimulatedCudaError(cudaError_t.cudaErrorNotReady)  # work still queued
            return ()
        return self._call("cudaEventQuery", body)

    # -- capture and graphs ----------------------------------------------------------------

    def cudaStreamBeginCapture(self, stream, mode):
        def body():
            if not isinstance(mode, cudaStreamCaptureMode):
                raise TypeError(f"Argument 'mode' is not instance of type (expected "
                                f"{cudaStreamCaptureMode}, got {type(mode)})")
            target = self._stream(stream)
            if target.handle == 0:
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureUnsupported)
            if target.capture is not None:
                raise SimulatedCudaError(cudaError_t.cudaErrorIllegalState)
            target.capture = _Capture(mode)
            return ()
        return self._call("cudaStreamBeginCapture", body)

    def cudaStreamIsCapturing(self, stream):
        def body():
            capture = self._stream(stream).capture
            status = cudaStreamCaptureStatus.cudaStreamCaptureStatusNone if capture is None \
                else cudaStreamCaptureStatus.cudaStreamCaptureStatusInvalidated \
                if capture.invalidated else cudaStreamCaptureStatus.cudaStreamCaptureStatusActive
            return (status,)
        return self._call("cudaStreamIsCapturing", body)

    def cudaStreamEndCapture(self, stream):
        def body():
            target = self._stream(stream)
            capture = target.capture
            if capture is None:
                raise SimulatedCudaError(cudaError_t.cudaErrorIllegalState)
            if capture.thread != threading.get_ident():
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureWrongThread)
            target.capture = None
            if capture.invalidated:
                raise SimulatedCudaError(cudaError_t.cudaErrorStreamCaptureInvalidated)
            handle = next(self._handles)
            self._graphs[handle] = capture.ops
            return (cudaGraph_t(handle),)
        return self._call("cudaStreamEndCapture", body)

    def cudaGraphInstantiate(self, graph, flags: int):
        def body():
            if not isinstance(graph, (cudaGraph_t, int)) or not isinstance(flags, int):
                raise TypeError("cudaGraphInstantiate(graph, flags: int)")
            ops = self._graphs.get(int(graph))
            if ops is None:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidValue)
            handle = next(self._handles)
            self._execs[handle] = list(ops)
            return (cudaGraphExec_t(handle),)
        return self._call("cudaGraphInstantiate", body)

    def cudaGraphLaunch(self, graph_exec, stream):
        def body():
            ops = self._execs.get(int(graph_exec))
            if ops is None:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidValue)
            target = self._stream(stream)
            for kind, args in ops:  # the captured addresses, as a real graph keeps them
                self._enqueue(target, kind, args)
            self.log.append(("cudaGraphLaunch", int(graph_exec)))
            return ()
        return self._call("cudaGraphLaunch", body)

    def _destroy(self, name: str, table: dict, handle):
        def body():
            if table.pop(int(handle), None) is None:
                raise SimulatedCudaError(cudaError_t.cudaErrorInvalidValue)
            return ()
        return self._call(name, body)

    def cudaGraphExecDestroy(self, graph_exec):
        return self._destroy("cudaGraphExecDestroy", self._execs, graph_exec)

    def cudaGraphDestroy(self, graph):
        return self._destroy("cudaGraphDestroy", self._graphs, graph)


@contextlib.contextmanager
def simulated(runtime: SimulatedRuntime | None = None):
    """``ocr_deploy.cuda`` on a simulated runtime inside the block (yields it)."""
    from ocr_deploy import cuda

    runtime = runtime or SimulatedRuntime()
    original = cuda.runtime_module
    cuda.runtime_module = lambda: runtime
    try:
        yield runtime
    finally:
        cuda.runtime_module = original


# ------------------------------------------------------------------ an array library on it

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)


class SimArray:
    """A device array of ``SimArrays``: CUDA memory on the simulated runtime, offered over
    DLPack (the producer side of the stream handshake, as PyTorch and CuPy do it) and over
    the CUDA array interface v3 (with its library's current stream)."""

    def __init__(self, library: SimArrays, ptr: int, shape: tuple, dtype, owner=None):
        self.library, self.ptr, self.shape, self.dtype = library, ptr, tuple(shape), \
            np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.owner = owner  # the allocation this view keeps alive
        self._keep = []

    @property
    def __cuda_array_interface__(self) -> dict:
        current = self.library.handle(self.library.current_stream())
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3, "stream": current or 1}

    def __dlpack_device__(self):
        return (2, self.library.device_id)

    def __dlpack__(self, stream=None):
        if stream == 0:
            raise AssertionError("unsupported stream on CUDA: 0")  # as PyTorch refuses it
        if stream is not None and stream != -1:  # the consumer waits for our current stream
            self.library.order(self.library.current_stream(), stream)
        shape = (ctypes.c_int64 * len(self.shape))(*self.shape)
        managed = _DLManagedTensor()
        tensor = managed.dl_tensor
        tensor.data, tensor.ndim, tensor.shape = self.ptr, len(self.shape), shape
        tensor.device = _DLDevice(2, self.library.device_id)
        kind = {"f": 2, "i": 0, "u": 1}[self.dtype.kind]
        tensor.dtype = _DLDataType(kind, self.dtype.itemsize * 8, 1)
        self._keep.append((shape, managed))
        return _capsule_new(ctypes.addressof(managed), b"dltensor", None)


class SimArrays:
    """An array library on the simulated runtime, with a current stream per thread; the
    same adapter surface as ``gpu_check.py``'s PyTorch and CuPy ones."""

    name = "simulated arrays"
    version = "on the simulated runtime"

    def __init__(self, runtime: SimulatedRuntime, device_id: int = 0):
        self.runtime, self.device_id = runtime, device_id
        self._current = threading.local()

    def _ok(self, result):
        assert result[0] == cudaError_t.cudaSuccess, result[0]
        return result[1] if len(result) > 1 else None

    def stream(self):
        return self._ok(self.runtime.cudaStreamCreateWithFlags(1))

    def handle(self, stream) -> int:
        return int(stream)

    def default_handle(self) -> int:
        return 0

    def current_stream(self):
        return getattr(self._current, "stream", 0)

    @contextlib.contextmanager
    def current(self, stream):
        previous = self.current_stream()
        self._current.stream = stream
        try:
            yield
        finally:
            self._current.stream = previous

    def synchronize(self, stream) -> None:
        self._ok(self.runtime.cudaStreamSynchronize(stream))

    def order(self, producer, consumer) -> None:
        """Make ``consumer`` wait for the work queued on ``producer`` so far."""
        event = self._ok(self.runtime.cudaEventCreateWithFlags(2))
        self._ok(self.runtime.cudaEventRecord(event, producer))
        self._ok(self.runtime.cudaStreamWaitEvent(consumer, event, 0))

    def empty(self, shape, dtype) -> SimArray:
        """A zero-filled device array (filled on the current stream)."""
        array = self._allocate(shape, dtype, 0)
        zeros = np.zeros(array.nbytes, np.uint8)
        self._copy_in(array, zeros)
        return array

    def upload(self, host: np.ndarray) -> SimArray:
        """A device copy of ``host``, complete on return."""
        array = self._allocate(host.shape, host.dtype, 0)
        self._copy_in(array, np.ascontiguousarray(host))
        self.synchronize(self.current_stream())
        return array

    def misaligned(self, shape, dtype) -> SimArray:
        """A view ``itemsize`` bytes into a fresh allocation (like ``x[1:]``)."""
        return self._allocate(shape, dtype, np.dtype(dtype).itemsize)

    def copy(self, dst: SimArray, src: SimArray) -> None:
        """``dst[...] = src`` on the current stream."""
        self._ok(self.runtime.cudaMemcpyAsync(dst.ptr, src.ptr, src.nbytes,
                                              cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                              self.current_stream()))

    def download(self, array: SimArray) -> np.ndarray:
        """A host copy, after the work on the current stream."""
        out = np.empty(array.shape, array.dtype)
        self._ok(self.runtime.cudaMemcpyAsync(out.ctypes.data, array.ptr, array.nbytes,
                                              cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                              self.current_stream()))
        self.synchronize(self.current_stream())
        return out

    def cai_only(self, array: SimArray) -> CudaArrayInterfaceOnly:
        return CudaArrayInterfaceOnly(array)

    def _allocate(self, shape, dtype, offset: int) -> SimArray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = self._ok(self.runtime.cudaMalloc(nbytes + offset))
        return SimArray(self, ptr + offset, shape, dtype, owner=ptr)

    def _copy_in(self, array: SimArray, host: np.ndarray) -> None:
        array._keep.append(host)  # deferred: the host bytes must outlive the copy
        self._ok(self.runtime.cudaMemcpyAsync(array.ptr, host.ctypes.data, array.nbytes,
                                              cudaMemcpyKind.cudaMemcpyHostToDevice,
                                              self.current_stream()))

