"""A STAND-IN for the ``tensorrt`` module: NOT TensorRT, and no evidence that TensorRT works.

Just enough of TensorRT's Python API (``Runtime``, ``ICudaEngine``, ``IExecutionContext``,
``ILogger``, ``TensorIOMode``, ``DataType``, ``nptype``) for ``TensorRTRunner`` to open an
"engine" of this module's own JSON format (``write_engine``) and run it. Running it enqueues
device-to-device copies through the CUDA runtime that ``ocr_deploy.cuda`` uses (the real
cuda-python one on a GPU, ``cuda_sim``'s in tests):

- input ``image``: float32 ``[batch, H, W, 3]`` (NHWC), batch 1 to the engine's maximum;
- output ``logits`` (float32, same shape): the input shifted by one element
  (``np.roll(input, -1)`` over the whole batch), two ``cudaMemcpyAsync`` calls;
- output ``labels`` (int32 ``[batch, H, W]``): the input's first bytes, reinterpreted.

Like TensorRT, ``set_tensor_address`` returns False for an address that is not 256-byte
aligned (and logs an error), ``set_input_shape`` returns False outside the profile, and
``execute_async_v3`` logs an error and returns False when it fails. The first enqueue after
a shape change does setup work (``cudaMalloc``/``cudaFree``) that stream capture forbids,
as TensorRT warns it may; an engine written with ``fail_under_capture`` calls ``cudaMalloc``
on every enqueue while its stream is capturing, so a CUDA graph can never be captured.
``installed()`` puts this module in ``sys.modules["tensorrt"]`` for a block; the package never
does.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import INPUT_NAME

__version__ = "10.99.0.0-standin"
FORMAT = "ocr-deploy TensorRT stand-in engine"
INPUT, LOGITS, LABELS = INPUT_NAME, "logits", "labels"
ALIGNMENT = 256


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    INT32 = 3


def nptype(dtype: DataType):
    return {DataType.FLOAT: np.float32, DataType.INT32: np.int32}[dtype]


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass

    def log(self, severity, msg):
        raise NotImplementedError


def _runtime():
    from ocr_deploy import cuda

    return cuda.runtime_module()


def _ok(result) -> bool:
    return result[0] == _runtime().cudaError_t.cudaSuccess


def _error_name(result) -> str:
    rt = _runtime()
    return rt.cudaGetErrorName(result[0])[1].decode()


class Runtime:
    def __init__(self, logger: ILogger):
        self.logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, data: bytes):
        try:
            spec = json.loads(bytes(data))
            if spec.get("format") != FORMAT:
                raise ValueError("not a stand-in engine")
            return ICudaEngine(spec, self.logger)
        except (ValueError, AttributeError) as exc:
            self.logger.log(ILogger.Severity.ERROR, f"stand-in: cannot deserialise ({exc}): "
                            "magic tag does not match")
            return None


class ICudaEngine:
    def __init__(self, spec: dict, logger: ILogger):
        self.height, self.width = int(spec["height"]), int(spec["width"])
        self.max_batch = int(spec["max_batch"])
        self.min_batch = int(spec.get("min_batch", 1))
        self.fail_under_capture = bool(spec.get("fail_under_capture"))
        self.logger = logger
        self.contexts: list[IExecutionContext] = []
        shape = (-1, self.height, self.width, 3)
        self._tensors = {INPUT: (TensorIOMode.INPUT, DataType.FLOAT, shape),
                         LOGITS: (TensorIOMode.OUTPUT, DataType.FLOAT, shape),
                         LABELS: (TensorIOMode.OUTPUT, DataType.INT32, shape[:3])}

    @property
    def num_io_tensors(self) -> int:
        return len(self._tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self._tensors)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._tensors[name][0] if name in self._tensors else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._tensors[name][1]

    def get_tensor_shape(self, name: str) -> tuple:
        return self._tensors[name][2]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple]:
        rest = self._tensors[name][2][1:]
        return [(self.min_batch, *rest), (self.min_batch, *rest), (self.max_batch, *rest)]

    @property
    def device_memory_size_v2(self) -> int:
        """What a context would allocate: one float32 activation of the largest batch."""
        return self.max_batch * self.height * self.width * 3 * 4

    def create_execution_context(self):
        context = IExecutionContext(self)
        self.contexts.append(context)
        return context


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.batch = 0
        self.addresses: dict[str, int] = {}
        self.address_calls: list[tuple[str, int, bool]] = []  # (name, address, accepted)
        self.executions: list[dict] = []  # {"stream", "batch", "captured"} per enqueue
        self._setup_pending = False

    def _error(self, message: str) -> bool:
        self.engine.logger.log(ILogger.Severity.ERROR, message)
        return False

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        want = (self.engine.height, self.engine.width, 3)
        if name != INPUT or len(shape) != 4 or shape[1:] != want \
                or not self.engine.min_batch <= shape[0] <= self.engine.max_batch:
            return self._error(f"stand-in: set_input_shape({name}, {shape}): outside the "
                               f"profile [{self.engine.min_batch}..{self.engine.max_batch}, "
                               f"{want}]")
        if shape[0] != self.batch:
            self._setup_pending = True  # TensorRT may set up in the next enqueue
        self.batch = shape[0]
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        shape = self.engine.get_tensor_shape(name)
        return (self.batch or -1, *shape[1:])

    def set_tensor_address(self, name: str, address: int) -> bool:
        address = int(address)
        accepted = name in self.engine._tensors and address % ALIGNMENT == 0 and address != 0
        self.address_calls.append((name, address, accepted))
        if not accepted:
            return self._error(f"stand-in: set_tensor_address({name}, 0x{address:x}): "
                               "Parameter check failed, the address must be 256-byte aligned")
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        rt, stream = _runtime(), int(stream_handle)
        missing = [n for n in self.engine._tensors if n not in self.addresses]
        if missing or not self.batch:
            return self._error(f"stand-in: enqueue without addresses {missing} or input shape")
        status = rt.cudaStreamIsCapturing(stream)
        if not _ok(status):
            return self._error(f"stand-in: cudaStreamIsCapturing: {_error_name(status)}")
        capturing = status[1] != rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone
        if self._setup_pending or (capturing and self.engine.fail_under_capture):
            allocated = rt.cudaMalloc(ALIGNMENT)  # setup work: not capturable
            if not _ok(allocated):
                return self._error(f"stand-in: cudaMalloc in enqueue: {_error_name(allocated)}")
            rt.cudaFree(allocated[1])
            if capturing:  # not refused by this runtime: still refuse the capture
                return self._error("stand-in: enqueue under capture refused")
            self._setup_pending = False
        itemsize = 4
        count = self.batch * self.engine.height * self.engine.width * 3
        source, logits = self.addresses[INPUT], self.addresses[LOGITS]
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        copies = ((logits, source + itemsize, (count - 1) * itemsize),
                  (logits + (count - 1) * itemsize, source, itemsize),
                  (self.addresses[LABELS], source, count // 3 * 4))
        for dst, src, nbytes in copies:
            result = rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream)
            if not _ok(result):
                return self._error(f"stand-in: cudaMemcpyAsync: {_error_name(result)}")
        self.executions.append({"stream": stream, "batch": self.batch, "captured": capturing})
        return True


# ------------------------------------------------------------------ for tests and gpu_check

SIM_SIZE = 8  # H = W of the simulated tests' engines
SIM_DEVICE = {"gpu_name": "Simulated GPU (host memory)", "compute_capability": "9.0"}


def random_batch(count: int, seed: int = 0, size: int = SIM_SIZE) -> np.ndarray:
    """``count`` float32 NHWC images of ``size x size`` for a stand-in engine."""
    return np.random.default_rng(seed).standard_normal((count, size, size, 3)).astype(
        np.float32)


def assert_expected(got: dict, batch: np.ndarray) -> None:
    """Every output in ``got`` is what the stand-in computes for ``batch``."""
    want = expected(batch)
    for name, value in got.items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def expected(batch: np.ndarray) -> dict[str, np.ndarray]:
    """What the stand-in engine computes from an input batch (float32 NHWC)."""
    flat = np.ascontiguousarray(batch, np.float32).ravel()
    labels = flat[:flat.size // 3].view(np.int32).reshape(batch.shape[:3])
    return {LOGITS: np.roll(flat, -1).reshape(batch.shape), LABELS: labels}


def metadata(height: int, width: int) -> dict:
    """The ExportMetadata (as a dict) of a stand-in engine."""
    return {"format_version": 1, "input_name": INPUT, "input_layout": "NHWC",
            "input_height": height, "input_width": width, "input_channels": 3,
            "num_classes": 3, "precision": "fp32",
            "outputs": {LOGITS: {"kind": "logits", "layout": "NHWC", "stride": 1},
                        LABELS: {"kind": "labels", "layout": "NHW", "stride": 1}}}


def write_engine(path: Path, height: int = 16, width: int = 16, max_batch: int = 8,
                 fail_under_capture: bool = False, device: dict | None = None,
                 min_batch: int = 1) -> Path:
    """Write a stand-in engine and its sidecar (as ``ocr-build-engine`` would: metadata,
    profile, TensorRT version, and ``device``'s GPU name and compute capability); a
    ``min_batch`` equal to ``max_batch`` is a static profile b:b:b."""
    from sidecars import write_sidecar

    path = Path(path)
    spec = {"format": FORMAT, "height": height, "width": width, "max_batch": max_batch,
            "min_batch": min_batch, "fail_under_capture": fail_under_capture}
    path.write_text(json.dumps(spec))
    shape = [height, width, 3]
    write_sidecar(path, {"backend": "tensorrt", "tensorrt_version": __version__,
                         "metadata": metadata(height, width),
                         "profiles": [{"min": [min_batch, *shape], "opt": [min_batch, *shape],
                                       "max": [max_batch, *shape]}],
                         **(device or {})})
    return path


@contextlib.contextmanager
def installed():
    """``import tensorrt`` gives this stand-in inside the block, with a fresh shared logger."""
    from ocr_deploy.backends.tensorrt.library import shared_logger

    previous = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = sys.modules[__name__]
    shared_logger.cache_clear()
    try:
        yield sys.modules[__name__]
    finally:
        shared_logger.cache_clear()
        if previous is None:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = previous
