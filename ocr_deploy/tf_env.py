"""Quiet, lazy imports of TensorFlow, Keras 3 and legacy tf_keras.

Only the export stage and the model code use these; the runtime never does.
"""

from __future__ import annotations

import logging
import os

from ocr_deploy.errors import BadInputError


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU results
    for name in ("tensorflow", "tf2onnx", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_tensorflow():
    """Import TensorFlow with its log noise turned down."""
    _quiet()
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
