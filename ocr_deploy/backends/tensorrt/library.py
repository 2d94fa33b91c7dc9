"""Finding TensorRT: importing it with a clear error, its version, and whether it and a CUDA
GPU are usable here (``--backend auto`` asks)."""

from __future__ import annotations

import functools

from ocr_deploy.errors import BadInputError, CudaError

MIN_MAJOR = 10  # the API used here (STRONGLY_TYPED, execute_async_v3 by name) is 10.x's


def import_tensorrt(path: object = None):
    """Import TensorRT (>= ``MIN_MAJOR``), or say clearly that this needs it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BadInputError(path, "TensorRT (the 'tensorrt' extra, on a machine with an "
                            "NVIDIA GPU)", f"it is not installed ({exc})",
                            "install it with: pip install 'ocr-deploy[tensorrt]', or use "
                            "the ONNX Runtime backend instead") from exc
    version = getattr(tensorrt, "__version__", "unknown")
    if too_old(version):
        raise BadInputError(path, f"TensorRT >= {MIN_MAJOR} (on Jetson: JetPack >= 6.1)",
                            f"TensorRT {version}", "upgrade TensorRT (pip install "
                            "'ocr-deploy[tensorrt]'; on Jetson flash JetPack >= 6.1, whose "
                            "TensorRT is 10.3), or use the ONNX Runtime backend")
    return tensorrt


def too_old(version: str) -> bool:
    """Whether TensorRT ``version`` is below ``MIN_MAJOR`` (8.6 on JetPack 6.0)."""
    return (version_tuple(version) or (0,))[0] < MIN_MAJOR


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)`` (non-numeric parts dropped)."""
    return tuple(int(part) for part in str(version).split(".") if part.isdigit())


def capability(value) -> str | None:
    """A compute capability as ``"8.9"`` from ``"8.9"``, ``[8, 9]`` or ``8.9``."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in value)
    return str(value)


def release(version: str) -> tuple[str, ...]:
    """``10.13.0.35`` -> ``("10", "13", "0")``: engines need the same release."""
    return tuple(str(version).split(".")[:3])


def availability() -> tuple[bool, str]:
    """Whether TensorRT and a CUDA GPU are usable here, and why not."""
    try:
        import tensorrt
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    if too_old(tensorrt.__version__):
        return False, (f"TensorRT {tensorrt.__version__} is older than {MIN_MAJOR} (on "
                       "Jetson: JetPack >= 6.1)")
    from ocr_deploy import cuda

    try:
        device = cuda.device_info(0)
    except BadInputError as exc:  # cuda-python missing
        return False, exc.found
    except CudaError as exc:
        hint = ""
        if "InsufficientDriver" in exc.found:
            hint = ("; cuda-python is built for a newer CUDA than this driver: install the "
                    "cuda-python matching the driver's CUDA (JetPack 6: the 'jetson' extra, "
                    "cuda-python 12.6; CUDA 12 drivers: cuda-python<13), or cuda-compat, or "
                    "update the driver")
        return False, f"no usable CUDA GPU ({exc.found}{hint})"
    return True, f"TensorRT {tensorrt.__version__} and {device['gpu_name']} are present"


class ErrorLog:
    """The error messages a TensorRT logger received (the last ``KEEP``), read by position
    so that each call reports its own."""

    KEEP = 64

    def __init__(self):
        self.messages: list[str] = []
        self.count = 0  # recorded so far, including those no longer kept

    def record(self, message: str) -> None:
        self.messages = [*self.messages[-(self.KEEP - 1):], message]
        self.count += 1

    def mark(self) -> int:
        """A position to read errors from (``since``)."""
        return self.count

    def since(self, mark: int) -> str:
        """The last two errors recorded since ``mark``, joined (empty if none)."""
        return "; ".join(self.all_since(mark)[-2:])

    def all_since(self, mark: int) -> list[str]:
        """Every message recorded since ``mark`` that is still kept."""
        new = min(self.count - mark, len(self.messages))
        return self.messages[len(self.messages) - new:] if new > 0 else []


@functools.cache
def shared_logger():
    """The one TensorRT logger of this process, for builders and runtimes alike: TensorRT's
    logger is global (a second one passed to another ``Runtime`` receives no messages), so
    every caller shares this one and reads the errors of its own call by position
    (``logger.errors.mark()``, then ``logger.errors.since(mark)``)."""
    import warnings

    trt = import_tensorrt()

    class RecordingLogger(trt.ILogger):
        """Errors into ``self.errors`` (an ``ErrorLog``), warnings as Python warnings, and
        the builder's INFO block "Layers running on DLA" (the lines up to "Layers running
        on GPU") into ``self.dla_report`` (an ``ErrorLog`` too: read by position); other
        INFO messages are dropped."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = ErrorLog()
            self.dla_report = ErrorLog()
            self._in_dla_block = False

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.record(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                warnings.warn(f"TensorRT: {msg}", stacklevel=2)
            elif severity == trt.ILogger.Severity.INFO:
                if "Layers running on DLA" in msg:
                    self._in_dla_block = True
                elif "Layers running on" in msg:
                    self._in_dla_block = False
                elif self._in_dla_block and msg.strip():
                    self.dla_report.record(msg.strip())

    return RecordingLogger()
