"""Finding TensorRT: importing it with a clear error, its version, and whether it and a CUDA
GPU are usable here (``--backend auto`` asks)."""

from __future__ import annotations

import functools

from ocr_deploy.errors import BadInputError, CudaError


def import_tensorrt(path: object = None):
    """Import TensorRT, or say clearly that this needs it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BadInputError(path, "TensorRT (the 'tensorrt' extra, on a machine with an "
                            "NVIDIA GPU)", f"it is not installed ({exc})",
                            "install it with: pip install 'ocr-deploy[tensorrt]', or use "
                            "the ONNX Runtime backend instead") from exc
    return tensorrt


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
        new = min(self.count - mark, len(self.messages))
        return "; ".join(self.messages[len(self.messages) - new:][-2:]) if new > 0 else ""


@functools.cache
def shared_logger():
    """The one TensorRT logger of this process, for builders and runtimes alike: TensorRT's
    logger is global (a second one passed to another ``Runtime`` receives no messages), so
    every caller shares this one and reads the errors of its own call by position
    (``logger.errors.mark()``, then ``logger.errors.since(mark)``)."""
    import warnings

    trt = import_tensorrt()

    class RecordingLogger(trt.ILogger):
        """Errors into ``self.errors`` (an ``ErrorLog``), warnings as Python warnings."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = ErrorLog()

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.record(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                warnings.warn(f"TensorRT: {msg}", stacklevel=2)

    return RecordingLogger()
