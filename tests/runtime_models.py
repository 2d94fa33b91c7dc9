"""Small exported models shared by the runtime, ocr-predict and ocr-bench tests.

Each variant is exported from conftest's ``keras3_h5`` (64x64 input, 4 classes) by a
session-scoped fixture in conftest (``nhwc_onnx``, ``nchw_onnx``).
"""

from __future__ import annotations

from pathlib import Path

from ocr_deploy.model_card import ModelCard

CLASS_NAMES = ["background", "disc", "square", "ring"]
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200]]
MEAN, STD = [127.5, 120.0, 110.0], [127.5, 60.0, 70.0]

# NHWC with logits + in-graph labels and a model card (palette, names, normalisation);
# NCHW labels-only with the normalisation in the graph and no card (fallback palette).
VARIANTS = {"nhwc": {"argmax": True}, "nchw_labels": {"nchw": True, "labels_only": True,
                                                      "normalize_in_graph": True}}


def exported(variant: str, keras_h5: Path, tmp_path_factory) -> Path:
    """Export ``variant`` of ``keras_h5`` into a fresh folder; return the ONNX path."""
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    folder = tmp_path_factory.mktemp(f"runtime_{variant}")
    options = dict(VARIANTS[variant])
    if variant == "nhwc":
        card = folder / "card.json"
        ModelCard(class_names=CLASS_NAMES, palette=PALETTE, mean=MEAN, std=STD).save(card)
        options["card"] = card
    return export_model(ExportRequest(model=keras_h5, output=folder / f"{variant}.onnx",
                                      quiet=True, random_samples=2, **options)).onnx_path
