"""ONNX Runtime build options (``ocr-build-engine``'s "ONNX Runtime" flags)."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_deploy.backends.options import option

LEVELS = ("auto", "basic", "extended", "all")


def _level(text: str) -> str:
    import argparse

    if text not in LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LEVELS)}, found '{text}'")
    return text


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """How the ONNX Runtime artifact is optimised before it is saved."""

    optimization: str = option(
        "auto", "--ort-optimization", parse=_level, metavar="{" + ",".join(LEVELS) + "}",
        help="graph optimisation level saved in the artifact; auto: basic where a GPU "
             "execution provider exists, else extended")
