"""ONNX Runtime as every layer uses it, as ``cuda.py`` is for CUDA: which execution
providers to ask for, the warning when it fell back from one, and keeping
its logs and its quantisation tools' prints off stdout (which must stay clean for
``--json``). Imports nothing of the project above ``errors``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence

from ocr_deploy.errors import BadInputError

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
           "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def choose_providers(requested: Sequence | None, available: Sequence[str],
                     device_id: int = 0, built_options: dict | None = None) -> list:
    """The providers to ask for: ``requested`` (names, aliases such as "cuda", or
    ``(name, options)`` pairs) checked against ``available``, else the best available with
    the options ``ocr-build-engine`` recorded for them (``built_options``: name -> dict)."""
    if not requested:
        names = [p for p in PREFERRED if p in available]
        built = built_options or {}
        return [(p, {"device_id": device_id, **built.get(p, {})}) if p in GPU_PROVIDERS
                else p for p in names]
    chosen = []
    for entry in requested:
        name = entry[0] if isinstance(entry, (tuple, list)) else ALIASES.get(entry, entry)
        if name not in available:
            raise BadInputError(None, f"an execution provider of this onnxruntime "
                                f"({', '.join(available)})", f"'{name}'",
                                "install onnxruntime-gpu for CUDA/TensorRT, or drop the option")
        chosen.append(entry if isinstance(entry, (tuple, list)) else name)
    return chosen


def warn_dropped(chosen: Sequence, active: Sequence[str], what: str = "runs") -> None:
    """Say so when ONNX Runtime silently fell back from a provider it was given (its
    TensorRT provider, for one, needs the TensorRT major it was built against: 1.31's needs
    libnvinfer.so.10 and prints "EP Error" with TensorRT 11, then retries without it)."""
    wanted = [p[0] if isinstance(p, (tuple, list)) else p for p in chosen]
    dropped = [p for p in wanted if p not in active]
    if dropped:
        warnings.warn(f"ONNX Runtime could not use {', '.join(dropped)} (see its log above) "
                      f"and {what} on {', '.join(active)}; check that the CUDA/TensorRT "
                      "libraries match this onnxruntime-gpu build", stacklevel=3)


def mute_onnxruntime_logger() -> None:
    """Only fatal messages from ONNX Runtime's default logger (used by sessions the
    converter and the checks create)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)


@contextlib.contextmanager
def quantizer_output_redirected(verbose: bool = False) -> Iterator[None]:
    """Send the ``print()`` progress of ORT's quantisation tools to stderr (``verbose``) or
    discard it, and mute the advice its quantiser logs through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
            yield
    finally:
        root.setLevel(level)
