"""The input range the parity check feeds the model: the range the model expects.

Random pixels (0..255) are mapped the way the model wants them, decided in this order:

1. ``--mean/--std`` or the model card: ``(pixel - mean) / std``;
2. preprocessing layers at the model's input (``Rescaling``, ``Normalization``, as in
   keras.applications MobileNetV3 and EfficientNet): raw pixels, the model scales them;
3. nothing known: ImageNet mean/std (``(pixel - mean) / std``, about -2.1..2.6), the range
   of most backbones without built-in preprocessing. Raw 0..255 pixels would push such a
   model far outside its working range, where activations blow up and float rounding
   differences grow with them.

The choice is reported, and a parity failure names the flags that set the range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
PREPROCESSING_LAYERS = ("Rescaling", "Normalization")
HOW_TO_SET = "set the model's input range with --mean R,G,B --std R,G,B (or a model card)"


@dataclass
class InputRange:
    """How parity images (uint8 pixels) become model inputs, and why."""

    mean: list[float]
    std: list[float]
    source: str  # "flags or card", "model preprocessing layers", "assumed ImageNet"
    layers: list[str] | None = None  # the preprocessing layers found

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``(pixels - mean) / std`` as float32."""
        return (pixels.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)

    def describe(self) -> str:
        """One phrase for messages and reports."""
        if self.source == "model preprocessing layers":
            return f"raw 0..255 pixels (the model's {', '.join(self.layers)} scale them)"
        return (f"(pixel - mean {_short(self.mean)}) / std {_short(self.std)}, from "
                f"{self.source}")

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "source": self.source,
                "layers": self.layers, "description": self.describe()}


def parity_input_range(card_mean: list[float], card_std: list[float], explicit: bool,
                       model, channels: int = 3) -> InputRange:
    """Decide the range (see the module docstring). ``explicit``: the mean/std came from
    flags or a card; ``model``: the Keras model (or anything else: not inspected)."""
    if explicit:
        return InputRange(list(card_mean), list(card_std), "flags or card")
    found = input_preprocessing(model)
    if found:
        return InputRange([0.0] * channels, [1.0] * channels, "model preprocessing layers",
                          found)
    mean = IMAGENET_MEAN if channels == 3 else [float(np.mean(IMAGENET_MEAN))]
    std = IMAGENET_STD if channels == 3 else [float(np.mean(IMAGENET_STD))]
    return InputRange(list(mean), list(std), "assumed ImageNet (no card, no --mean/--std, "
                      "no preprocessing layer at the input)")


def input_preprocessing(model) -> list[str]:
    """Class names of the preprocessing layers that first see the input (descending into a
    nested backbone), or an empty list."""
    layers = getattr(model, "layers", None)
    found = []
    for layer in layers or []:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        if name in PREPROCESSING_LAYERS:
            found.append(name)
            continue
        if getattr(layer, "layers", None) and not found:
            return input_preprocessing(layer)
        break
    return found


def _short(values: list[float]) -> str:
    return ",".join(f"{v:g}" for v in values)
