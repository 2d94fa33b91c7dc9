"""The parity judge on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ocr_deploy.verification.comparison import compare


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


def test_ties_are_counted_the_same_in_any_layout():
    from ocr_deploy.verification.comparison import Comparison, top2_gap

    scores = np.array([[[1.0, 1.00005, 0.0], [3.0, 1.0, 0.0]],
                       [[0.0, 2.0, 1.99], [5.0, 5.0, 5.0]]], np.float32)  # [2,2,K]
    gaps = top2_gap(scores)
    np.testing.assert_array_equal(gaps <= 2e-4, [[True, False], [False, True]])
    np.testing.assert_array_equal(top2_gap(np.moveaxis(scores, -1, 0), axis=0), gaps)
    assert np.isinf(top2_gap(scores[..., :1])).all()  # one class: never a tie
    candidate = scores.argmax(-1)
    candidate[0, 0], candidate[1, 0] = 0, 2  # one tie flipped, one real disagreement
    comparison = Comparison({"labels": "labels"}, atol=1e-4, rtol=0.0, min_agreement=0.5)
    comparison.add_labels("labels", candidate == scores.argmax(-1), gaps)
    (result,) = comparison.report().outputs
    assert result.label_agreement == 0.5 and result.tie_pixels == 1
    assert result.label_agreement_excl_ties == 0.5  # 1 of the 2 decided pixels agrees
    assert result.passed


def test_batches_accumulate_like_one_comparison():
    from ocr_deploy.verification.comparison import Comparison

    ref = _logits(3, (6, 4, 4, 3))
    cand = ref + np.random.default_rng(4).normal(0, 0.05, ref.shape).astype(np.float32)
    labels = {"logits": "logits", "labels": "labels"}
    whole = compare({"logits": ref, "labels": ref.argmax(-1)},
                    {"logits": cand, "labels": cand.argmax(-1)}, labels, 0.5, 0.0, 0.9)
    streamed = Comparison(labels, 0.5, 0.0, 0.9)
    for begin in (0, 2, 5):
        end = {0: 2, 2: 5, 5: 6}[begin]
        streamed.add({"logits": ref[begin:end], "labels": ref[begin:end].argmax(-1)},
                     {"logits": cand[begin:end], "labels": cand[begin:end].argmax(-1)})
    a, b = whole.to_dict(), streamed.report().to_dict()
    for x, y in zip(a.pop("outputs"), b.pop("outputs"), strict=True):
        assert x == pytest.approx(y)
    assert a == b


def test_counted_mask_and_value_check_off():
    from ocr_deploy.verification.comparison import Comparison

    ref = _logits(5)
    cand = ref.copy()
    cand[0, 0, 0] = ref[0, 0, 0][::-1] * 10  # a wild pixel
    counted = np.ones(ref.shape[:3], bool)
    counted[0, 0, 0] = False  # e.g. the ignore index of a validation mask
    strict = Comparison({"logits": "logits"}, min_agreement=1.0)
    strict.add({"logits": ref}, {"logits": cand}, counted)
    (out,) = strict.report().outputs
    assert not out.passed and "max abs" in out.reason and out.label_agreement == 1.0
    loose = Comparison({"logits": "logits"}, min_agreement=1.0, check_values=False)
    loose.add({"logits": ref}, {"logits": cand}, counted)
    assert loose.report().passed


def test_probabilities_are_judged_on_their_own_scale():
    logits = _logits()
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    report = compare({"p": probs}, {"p": probs + 5e-5}, {"p": "probabilities"})
    (out,) = report.outputs
    assert out.passed and out.scale <= 1.0 and out.label_agreement == 1.0
    assert not compare({"p": probs}, {"p": probs + 1e-3}, {"p": "probabilities"}).passed


def test_comparison_module_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, ocr_deploy.verification.comparison; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
