"""The parity judge on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np

from ocr_deploy.export.parity import compare


def _logits(seed=0, shape=(2, 4, 4, 3)):
    return np.random.default_rng(seed).normal(0, 5, shape).astype(np.float32)


def test_identical_outputs_pass_with_zero_error():
    ref = _logits()
    report = compare({"logits": ref}, {"logits": ref.copy()}, {"logits": "logits"})
    (out,) = report.outputs
    assert report.passed and out.max_abs_err == 0 and out.label_agreement == 1.0
    assert abs(out.cosine - 1.0) < 1e-12


def test_error_is_judged_against_the_logit_scale():
    ref = _logits()
    scale = float(np.abs(ref).max())
    small = ref.copy()
    small[0, 0, 0, 0] += 0.5e-4 * scale  # within atol + rtol * scale
    big = ref.copy()
    big[0, 0, 0, 0] += 1e-2 * scale
    ok = compare({"logits": ref}, {"logits": small}, {"logits": "logits"})
    bad = compare({"logits": ref}, {"logits": big}, {"logits": "logits"})
    assert ok.passed
    assert abs(ok.outputs[0].max_rel_err - 0.5e-4) < 1e-6
    assert not bad.passed and "tolerance" in bad.outputs[0].reason


def test_ties_are_not_counted_against_the_model():
    ref = np.zeros((1, 1, 2, 3), np.float32)
    ref[0, 0, 0] = [1.0, 1.0 + 1e-6, -3.0]  # a tie between classes 0 and 1
    ref[0, 0, 1] = [5.0, 0.0, 0.0]  # a clear winner
    cand = ref.copy()
    cand[0, 0, 0] = [1.0 + 1e-6, 1.0, -3.0]  # flips the tie
    report = compare({"logits": ref}, {"logits": cand}, {"logits": "logits"})
    (out,) = report.outputs
    assert report.passed and out.label_agreement == 0.5 and out.tie_pixels == 1
    cand[0, 0, 1] = [0.0, 5.0, 0.0]  # flips a clear pixel: fails
    assert not compare({"logits": ref}, {"logits": cand}, {"logits": "logits"}).passed


def test_labels_output_uses_logits_for_ties_and_shape_mismatch_fails():
    ref = _logits(1)
    labels = ref.argmax(-1).astype(np.int32)
    wrong = labels.copy()
    wrong[0, 0, 0] = (wrong[0, 0, 0] + 1) % 3
    kinds = {"logits": "logits", "labels": "labels"}
    good = compare({"logits": ref, "labels": labels}, {"logits": ref, "labels": labels}, kinds)
    bad = compare({"logits": ref, "labels": labels}, {"logits": ref, "labels": wrong}, kinds)
    assert good.passed and not bad.passed
    shape = compare({"logits": ref}, {"logits": ref[:1]}, {"logits": "logits"})
    assert not shape.passed and "shape" in shape.outputs[0].reason


def test_report_serialises_and_prints():
    ref = _logits()
    report = compare({"logits": ref}, {"logits": ref + 1e-6}, {"logits": "logits"})
    data = report.to_dict()
    assert data["passed"] and data["samples"] == 2 and data["outputs"][0]["name"] == "logits"
    assert "logits" in report.table() and "ok" in report.table()
