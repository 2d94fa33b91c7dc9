"""A model card: the facts about a Keras model that its file does not hold.

Stored as JSON beside the model (``MODEL.card.json`` next to ``MODEL.h5``), read by
``ocr-export`` and carried into the ONNX metadata so that later stages never guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocr_deploy.errors import BadInputError


@dataclass
class ModelCard:
    """Class names, palette and the preprocessing the model was trained with."""

    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)  # one [r, g, b] per class
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # in pixel units 0..255
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    color_order: str = "RGB"
    notes: dict = field(default_factory=dict)  # free-form: training figures, provenance

    @staticmethod
    def path_for(model_path: Path) -> Path:
        """Where the card of ``model_path`` lives: ``NAME.card.json`` beside it."""
        model_path = Path(model_path)
        stem = model_path.name if model_path.is_dir() else model_path.stem
        return model_path.parent / f"{stem}.card.json"

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a card; a malformed one is a clear error."""
        try:
            data = json.loads(Path(path).read_text())
            card = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise BadInputError(path, "a model card (JSON with class_names, palette, mean, std)",
                                f"unreadable content ({exc})", "fix or delete the file") from exc
        if len(card.mean) != 3 or len(card.std) != 3 or min(card.std) <= 0:
            raise BadInputError(path, "3 mean and 3 positive std values",
                                f"mean={card.mean} std={card.std}", "fix the card")
        return card

    def save(self, path: Path) -> None:
        from ocr_deploy.files import write_bytes_atomic

        write_bytes_atomic(Path(path), (json.dumps(asdict(self), indent=2) + "\n").encode())
