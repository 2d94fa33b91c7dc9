"""The corpus of real Keras segmentation models (tests/corpus) through ``ocr-export``.

Every model either exports with parity within 1e-4 of its output scale and every label
equal outside ties, or is refused with exit 2 or 4 and a one-line message naming the
limitation and the way out. Never exit 1 (an internal error).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import CORPUS
from corpus.run import export_entry, run_entry

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow, pytest.mark.corpus]


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_corpus_model(entry, tmp_path):
    outcome = run_entry(entry, tmp_path)
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


def test_library_tf_keras_layers_imported_after_tensorflow_are_refused(tmp_path):
    """In a process that imported TensorFlow already (this one), a library's tf.keras
    layers are Keras 3 classes: refused with the way out, not a crash."""
    from ocr_deploy.tf_env import import_tensorflow

    assert import_tensorflow().keras.layers.Layer.__module__.startswith("keras.")
    entry = next(e for e in CORPUS if e.name == "tfk-unet-collection-transunet")
    outcome = export_entry(entry, tmp_path)
    assert outcome.exit_code == 2, outcome.message
    assert "Keras 3 classes" in outcome.message and "TF_USE_LEGACY_KERAS=1" in outcome.message
