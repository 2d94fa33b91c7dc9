"""The corpus of real Keras segmentation models (tests/corpus) through ``ocr-export``.

Every model either exports with parity within 1e-4 of its output scale and every label
equal outside ties, or is refused with exit 2 or 4 and a one-line message naming the
limitation and the way out. Never exit 1 (an internal error).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import CORPUS
from corpus.run import export_entry, export_entry_in_subprocess

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_corpus_model(entry, tmp_path):
    outcome = export_entry(entry, tmp_path)
    assert outcome.exit_code != 1, outcome.message
    assert outcome.exit_code == entry.expect, outcome.message
    if entry.expect == 0:
        row = outcome.row()
        assert row["max_rel_err"] <= 1e-4 and row["labels"] == 1.0
        meta = outcome.report["metadata"]
        assert row["output"] == entry.output_kind
        assert meta["outputs"][entry.output_kind]["kind"] == entry.output_kind
        assert outcome.report["passed"] and Path(outcome.report["onnx"]).is_file()
        return
    assert outcome.message.startswith("ocr-export: error: ")
    for word in entry.message:
        assert word in outcome.message, outcome.message


def test_legacy_library_layers_work_under_tf_use_legacy_keras(tmp_path):
    """The way out the transunet refusal names: with TF_USE_LEGACY_KERAS=1 the library
    builds its layers on tf_keras and the model exports."""
    entry = next(e for e in CORPUS if e.name == "tfk-unet-collection-transunet")
    outcome = export_entry_in_subprocess(entry, tmp_path, {"TF_USE_LEGACY_KERAS": "1"})
    assert outcome.exit_code == 0, outcome.message
    row = outcome.row()
    assert row["max_rel_err"] <= 1e-4 and row["labels"] == 1.0
