"""Quiet, lazy imports of TensorFlow, Keras 3 and legacy tf_keras.

Only the export stage and the model code use these; the runtime never does. The settings
(``TF_CPP_MIN_LOG_LEVEL``, oneDNN off for bit-stable results) are environment variables
that TensorFlow reads when it is first imported, so ``apply_settings`` runs before any user
code (``--custom-objects``) can import TensorFlow itself. Converter noise from C++ (ONNX
Runtime's ``[E:onnxruntime ...]`` lines, TensorFlow's logs) is kept off the terminal with
``native_stderr_captured`` unless ``--debug`` asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

from ocr_deploy.errors import BadInputError


def apply_settings() -> None:
    """Set TensorFlow's options (environment variables read at its first import, and the
    Python loggers); idempotent, and values the user set are kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU results
    for name in ("tensorflow", "tf2onnx", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def prefer_tf_keras_for_user_code() -> bool:
    """Make ``tf.keras`` mean legacy tf_keras for code imported from now on (a user's layers
    written against ``tf.keras`` for a model tf.keras 2.x wrote). TensorFlow decides this
    when first imported, so it works only before that; returns whether it was applied.
    ``import keras`` stays Keras 3 either way."""
    if "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    return True


def import_tensorflow():
    """Import TensorFlow with its log noise turned down."""
    apply_settings()
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BadInputError(None, "TensorFlow (the 'export' extra) to be installed",
                            f"an import error ({exc})",
                            "install it with: pip install 'ocr-deploy[export]'") from exc
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def import_keras3():
    """Import Keras 3 (the default ``keras`` of TensorFlow >= 2.16)."""
    import_tensorflow()
    import keras

    if not keras.__version__.startswith("3."):
        raise BadInputError(None, "Keras 3 as the 'keras' module", f"keras {keras.__version__}",
                            "unset TF_USE_LEGACY_KERAS or upgrade keras")
    return keras


def import_tf_keras():
    """Import legacy Keras 2 (``tf_keras``), needed for models written by tf.keras <= 2.15."""
    import_tensorflow()
    try:
        import tf_keras
    except ImportError as exc:
        raise BadInputError(None, "tf_keras (legacy Keras 2) to load this model",
                            "it is not installed",
                            "run: pip install --no-deps tf-keras==<TensorFlow's version>"
                            ) from exc
    return tf_keras


@contextlib.contextmanager
def native_stderr_captured(show: bool = False):
    """Send what C/C++ code writes to stderr (file descriptor 2) during the block to a
    temporary file; yields a list that receives the captured text. ``show`` disables it."""
    captured: list[str] = []
    if show:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


BOILERPLATE = ("in user code", "File ", "raise ", "return ", "**", "*", "Exception encountered",
               "Arguments received", "Call arguments", "•", "Traceback")


ERROR_LINE = re.compile(r"^\w*(Error|Exception)\b:\s*")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: the informative line`` of a TensorFlow/Keras error, whose messages wrap the
    cause in traced-code frames, "Exception encountered when calling ..." headers, argument
    listings and terminal colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    raised = [i for i, line in enumerate(lines) if ERROR_LINE.match(line)]
    if raised:  # an error re-raised from traced code: its message starts at the last one
        lines = lines[raised[-1]:]
        lines[0] = ERROR_LINE.sub("", lines[0])
    useful = [line for line in lines if line and not line.startswith(BOILERPLATE)]
    text = " ".join((useful or [line for line in lines if line] or [""])[0].split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:limit]
