"""The built-in demo: a synthetic shapes dataset and a small trained OCRNet shipped in
``weights/`` (``demo_ocrnet.h5`` and its model card)."""

from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parent / "weights" / "demo_ocrnet.h5"
