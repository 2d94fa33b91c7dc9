"""Memory an application already holds, seen as (pointer, shape, dtype, device) without copying.

``tensor_ref`` accepts a raw address with its size in bytes (an ``(address, nbytes)``
tuple, e.g. from a C/C++ host; the size is checked), a bare address (an ``int``: **trusted
as given** — nothing can check what it points to, so a too-small buffer is written past its
end), a NumPy array, any object with ``__cuda_array_interface__`` (CuPy, PyTorch CUDA
tensors, Numba) or with ``__dlpack__`` (PyTorch, JAX, CuPy, NumPy ...); CUDA memory that
offers both goes through DLPack, whose stream handshake orders the producer's work before
the backend's without blocking (PyTorch's array interface carries no stream at all). Buffers
that will be written (outputs) must be writable: read-only arrays are refused. The returned
``TensorRef`` keeps the owner alive while the backend uses the pointer.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ocr_deploy.errors import BadInputError

_DLPACK_DEVICES = {1: "cpu", 2: "cuda", 3: "cpu", 13: "cuda"}  # CPU, CUDA, pinned, managed
_DLPACK_STREAMED = (2, 13)  # CUDA and managed memory: the producer takes a consumer stream
_DLPACK_KINDS = {0: "i", 1: "u", 2: "f"}


@dataclass(frozen=True)
class TensorRef:
    """A dense, row-major tensor somewhere in memory."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device: str  # "cpu" or "cuda"
    device_id: int = 0
    owner: object = None  # whatever must stay alive while ``ptr`` is used


class _DLDevice(ctypes.Structure):
    _fields_ = (("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32))


class _DLDataType(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16))


class _DLTensor(ctypes.Structure):
    _fields_ = (("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64))


class _DLManagedTensor(ctypes.Structure):
    _fields_ = (("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p))


def tensor_ref(value, what: str, shape: tuple[int, ...], dtype, device: str,
               device_id: int = 0, writable: bool = False,
               stream: int | None = None, alignment: int = 1) -> TensorRef:
    """Describe ``value`` as a ``TensorRef`` and check it against the expected shape/dtype.

    ``device``/``device_id`` say where a raw address points; array-like values carry their
    own device, which the backend then checks. ``writable``: the buffer will be written
    (an output), so read-only arrays are refused. ``stream``: the CUDA stream the backend
    will use the buffer on: a DLPack producer is asked to make its data ready on it
    (``__dlpack__(stream=...)``), and a ``__cuda_array_interface__`` producer's own
    ``"stream"`` is synchronised first, as both protocols require of a consumer (handle 0,
    the legacy default stream, is DLPack's 1: DLPack disallows 0).
    ``alignment``: the byte alignment the backend needs (TensorRT: 256); a slice or offset
    view that breaks it is refused.
    """
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if _is_address(value) or (isinstance(value, tuple) and len(value) == 2
                              and all(_is_address(v) for v in value)):
        address, size = (value, None) if _is_address(value) else value
        if int(address) <= 0:
            raise BadInputError(None, f"a non-null address for {what}", str(address),
                                "pass the address of a buffer you allocated")
        needed = int(np.prod(shape)) * dtype.itemsize
        if size is not None and int(size) < needed:
            raise BadInputError(None, f"a buffer of at least {needed} bytes for {what} "
                                f"({list(shape)} of {dtype})", f"{int(size)} bytes",
                                "allocate it with Segmenter.input_shape()/output_shape()")
        return _aligned(TensorRef(int(address), shape, dtype, device, device_id), what,
                        alignment)
    if isinstance(value, np.ndarray):
        ref = _from_numpy(value, what, writable)
    elif hasattr(value, "__dlpack__") and _dlpack_device(value)[0] in _DLPACK_STREAMED:
        if writable and _cuda_interface_read_only(value):
            raise _read_only(what)
        ref = _from_dlpack(value, what, stream)
    elif hasattr(value, "__cuda_array_interface__"):
        ref = _from_cuda_array_interface(value, what, device_id, writable, stream)
    elif hasattr(value, "__dlpack__"):
        ref = _from_dlpack(value, what, stream)
    else:
        raise BadInputError(None, f"{what} as an (address, nbytes) tuple, an address (int), a "
                            "NumPy array, or an object with __cuda_array_interface__ or "
                            "__dlpack__", f"a {type(value).__name__}", "pass one of these")
    if ref.shape != shape or ref.dtype != dtype:
        raise BadInputError(None, f"{what} shaped {list(shape)} of {dtype}",
                            f"{list(ref.shape)} of {ref.dtype}",
                            "allocate it with Segmenter.input_shape()/output_shape()")
    return _aligned(ref, what, alignment)


def _aligned(ref: TensorRef, what: str, alignment: int) -> TensorRef:
    if ref.ptr % alignment:
        raise BadInputError(None, f"{what} at a {alignment}-byte aligned address (what the "
                            "backend requires)", f"address 0x{ref.ptr:x} (offset "
                            f"{ref.ptr % alignment})", "pass a fresh allocation, not a slice "
                            "or an offset view of one")
    return ref


def _is_address(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _read_only(what: str) -> BadInputError:
    return BadInputError(None, f"{what} as writable memory (it is written in place)",
                         "a read-only buffer", "pass a writable array (e.g. np.empty(...), "
                         "or a memmap opened with mode 'r+')")


def _from_numpy(array: np.ndarray, what: str, writable: bool) -> TensorRef:
    if writable and not array.flags.writeable:
        raise _read_only(what)
    if not array.flags.c_contiguous:
        raise BadInputError(None, f"{what} as a C-contiguous array", "a strided view",
                            "pass np.ascontiguousarray(...)")
    return TensorRef(array.ctypes.data, array.shape, array.dtype, "cpu", 0, array)


def _from_cuda_array_interface(value, what: str, device_id: int, writable: bool,
                               stream: int | None) -> TensorRef:
    interface = value.__cuda_array_interface__
    if writable and interface["data"][1]:  # (pointer, read_only)
        raise _read_only(what)
    producer = interface.get("stream")  # v3: None means no synchronisation is needed
    if producer is not None and producer != stream:
        from ocr_deploy.cuda import synchronize_stream

        synchronize_stream(int(producer))
    shape = tuple(int(d) for d in interface["shape"])
    dtype = np.dtype(interface["typestr"])
    strides = interface.get("strides")
    if strides is not None and not _dense(shape, [s // dtype.itemsize for s in strides]):
        raise BadInputError(None, f"{what} as a contiguous tensor", f"strides {strides}",
                            "make it contiguous first (.contiguous(), cupy.ascontiguousarray)")
    return TensorRef(int(interface["data"][0]), shape, dtype, "cuda", device_id, value)


def _dlpack_device(value) -> tuple:
    return getattr(value, "__dlpack_device__", lambda: (None, 0))()


def _cuda_interface_read_only(value) -> bool:
    """Whether an object that also has ``__cuda_array_interface__`` says it is read-only."""
    try:
        return bool(value.__cuda_array_interface__["data"][1])
    except Exception:  # no interface, or one that refuses (a tensor that requires grad)
        return False


def _from_dlpack(value, what: str, stream: int | None) -> TensorRef:
    on_cuda = _dlpack_device(value)[0] in _DLPACK_STREAMED
    try:
        capsule = value.__dlpack__(stream=1 if stream == 0 else int(stream)) \
            if on_cuda and stream is not None else value.__dlpack__()
    except Exception as exc:  # BufferError by the protocol; PyTorch also asserts
        raise BadInputError(None, f"{what} that its producer exports over DLPack",
                            f"a refusal ({type(exc).__name__}: {exc})",
                            "pass a detached, contiguous tensor on the engine's GPU") from exc
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = (ctypes.py_object, ctypes.c_char_p)
    try:
        address = get_pointer(capsule, b"dltensor")
    except ValueError as exc:
        raise BadInputError(None, f"{what} as an unconsumed DLPack 'dltensor' capsule",
                            f"another capsule ({exc})", "pass the tensor itself") from exc
    tensor = _DLManagedTensor.from_address(address).dl_tensor
    device = _DLPACK_DEVICES.get(tensor.device.device_type)
    kind = _DLPACK_KINDS.get(tensor.dtype.code)
    if device is None or kind is None or tensor.dtype.lanes != 1:
        raise BadInputError(None, f"{what} in CPU or CUDA memory with a plain numeric type",
                            f"DLPack device type {tensor.device.device_type}, dtype code "
                            f"{tensor.dtype.code}", "copy it to a supported device first")
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    dtype = np.dtype(f"{kind}{tensor.dtype.bits // 8}")
    if tensor.strides and not _dense(shape, [tensor.strides[i] for i in range(tensor.ndim)]):
        raise BadInputError(None, f"{what} as a contiguous tensor", "a strided tensor",
                            "make it contiguous first")
    ptr = (tensor.data or 0) + tensor.byte_offset
    # the capsule stays unconsumed and owned here: its destructor releases the producer's
    # reference once the backend no longer needs the pointer
    return TensorRef(ptr, shape, dtype, device, tensor.device.device_id, (value, capsule))


def _dense(shape: tuple[int, ...], strides: list[int]) -> bool:
    """Whether element ``strides`` describe a row-major layout (size-1 dimensions ignored)."""
    step = 1
    for dim, stride in zip(reversed(shape), reversed(strides), strict=True):
        if dim != 1 and stride != step:
            return False
        step *= dim
    return True
