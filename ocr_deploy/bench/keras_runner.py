"""Keras/TensorFlow as a runner, so that ``ocr-bench`` puts the original model beside its
exports. The only benchmark path that imports TensorFlow.

The model runs as a ``tf.function`` on the same prepared batches as the exported models;
preprocessing comes from its model card (``NAME.card.json`` beside it), as in ``ocr-export``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocr_deploy.backends.runner import Runner
from ocr_deploy.contract.metadata import INPUT_NAME, ExportMetadata
from ocr_deploy.errors import BadInputError, UnsafeModelError


class KerasRunner(Runner):
    """A Keras model (``.h5``, ``.keras`` or a SavedModel folder) returning its logits."""

    name = "tensorflow"
    input_name = INPUT_NAME
    input_dtype = np.dtype(np.float32)
    output_names = ("logits",)

    def __init__(self, path: Path):
        from ocr_deploy.export.loader import load_model
        from ocr_deploy.export.outputs import choose_outputs
        from ocr_deploy.tf_env import import_tensorflow

        tf = import_tensorflow()
        try:
            self._loaded = load_model(Path(path))
        except UnsafeModelError as exc:  # ocr-bench has no --trust-model: say what to do here
            raise UnsafeModelError(exc.path, exc.expected, exc.found,
                                   "ocr-bench never runs code stored in a model; if you trust "
                                   "the file, export it with ocr-export --trust-model and "
                                   "benchmark the .onnx") from None
        height, width, channels = self._loaded.input_shape
        if height is None or width is None:
            raise BadInputError(path, "a Keras model with a fixed input size",
                                "a dynamic one", "benchmark its exported ONNX instead")
        self.hw = (int(height), int(width))
        self.channels = int(channels or 3)
        self.choice = choose_outputs(path, self.hw, self._loaded.output_shapes)
        self._out_shape = tuple(self._loaded.output_shapes[self.choice.logits][1:])
        self.device = "cuda" if tf.config.list_physical_devices("GPU") else "cpu"
        self._versions = {"tensorflow": tf.__version__, "keras": self._loaded.keras_version}
        logits = self.choice.logits
        self._function = tf.function(lambda image: self._loaded.call(image)[logits],
                                     reduce_retracing=True)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.hw, self.channels)

    def output_shape(self, name: str, batch: int) -> tuple[int, ...]:
        return (batch, *self._out_shape)

    def output_dtype(self, name: str) -> np.dtype:
        return np.dtype(np.float32)

    def run_batch(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        return {"logits": self._function(batch).numpy()}

    def info(self) -> dict:
        return {"backend": self.name, "device": self.device, **self._versions}

    def close(self) -> None:
        self._function = self._loaded = None

    def metadata(self, path: Path) -> ExportMetadata:
        """The contract an export of this model would record (card, sizes, logits)."""
        from ocr_deploy.model_card import ModelCard

        card_path = ModelCard.path_for(path)
        card = ModelCard.load(card_path) if card_path.is_file() else ModelCard()
        classes = self.choice.num_classes
        return ExportMetadata(
            input_height=self.hw[0], input_width=self.hw[1], input_channels=self.channels,
            color_order=card.color_order,
            normalization={"mean": card.mean, "std": card.std, "in_graph": False},
            num_classes=classes, class_names=card.class_names, palette=card.palette,
            outputs={"logits": {"kind": "logits", "layout": "NHWC",
                                "stride": self.choice.stride}},
            precision="fp32", source={"file": Path(path).name})
