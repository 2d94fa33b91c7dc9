"""ocr-export round trips through real TensorFlow, tf2onnx and ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.export.cli import main
from ocr_deploy.export.pipeline import ExportRequest, export_model
from ocr_deploy.model_card import ModelCard


def _export(model, tmp_path, name="out.onnx", **options):
    return export_model(ExportRequest(model=model, output=tmp_path / name, quiet=True,
                                      **options))


def _assert_parity(result, rel=1e-4):
    logits = next(o for o in result.parity.outputs if o.kind == "logits")
    assert result.parity.passed
    assert logits.max_rel_err <= rel
    assert logits.label_agreement_excl_ties == 1.0


def test_keras3_h5_round_trip(keras3_h5, keras3_model, tmp_path, onnx_session, images):
    result = _export(keras3_h5, tmp_path)
    _assert_parity(result)
    assert result.choice.logits == "logits" and result.choice.aux == ["aux_logits"]
    session = onnx_session(result.onnx_path)
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    (onnx_logits,) = session.run(None, {INPUT_NAME: images})  # batch 3: the batch is dynamic
    keras_logits = keras3_model.predict(images, verbose=0)[1]
    assert np.abs(onnx_logits - keras_logits).max() <= 1e-4 * np.abs(keras_logits).max()
    report = json.loads(result.report_path.read_text())
    assert report["passed"] and report["parity"]["outputs"][0]["name"] == "logits"


def test_metadata_records_contract_and_provenance(keras3_h5, tmp_path):
    card = ModelCard(class_names=["a", "b", "c", "d"], palette=[[0, 0, 0]] * 4,
                     mean=[10.0, 20.0, 30.0], std=[2.0, 2.0, 2.0], notes={"val_miou": 0.5})
    card.save(tmp_path / "card.json")
    result = _export(keras3_h5, tmp_path, card=tmp_path / "card.json")
    meta = read_metadata(result.onnx_path)
    assert (meta.input_height, meta.input_width, meta.input_layout) == (64, 64, "NHWC")
    assert meta.num_classes == 4 and meta.class_names == ["a", "b", "c", "d"]
    assert meta.normalization == {"mean": [10.0, 20.0, 30.0], "std": [2.0, 2.0, 2.0],
                                  "in_graph": False}
    assert meta.outputs == {"logits": {"kind": "logits", "layout": "NHWC", "stride": 1}}
    assert len(meta.source["sha256"]) == 64 and meta.source["format"] == "h5"
    assert meta.tools["opset"] == 17 and "tf2onnx" in meta.tools
    assert meta.parity["passed"] and meta.notes == {"val_miou": 0.5}


def test_blog_style_tf_keras_model(blog_h5, tmp_path):
    result = _export(blog_h5, tmp_path)
    _assert_parity(result)
    assert result.metadata.source["loaded_with"].startswith("tf_keras 2.")
    assert result.choice.aux == ["aux_logits"]


def test_keras_zip_and_savedmodel(keras3_zip, saved_model_dir, tmp_path):
    for model in (keras3_zip, saved_model_dir):
        result = _export(model, tmp_path, name=f"{model.name}.onnx")
        _assert_parity(result)
    assert result.metadata.source["format"] == "savedmodel"


def test_nchw_argmax_and_aux(keras3_h5, keras3_model, tmp_path, onnx_session, images):
    result = _export(keras3_h5, tmp_path, nchw=True, argmax=True, keep_aux=True)
    _assert_parity(result)
    session = onnx_session(result.onnx_path)
    shapes = {o.name: o.shape for o in session.get_outputs()}
    assert shapes["logits"][1:] == [4, 64, 64] and shapes["aux_logits"][1:] == [4, 16, 16]
    assert shapes["labels"][1:] == [64, 64]
    assert session.get_inputs()[0].shape[1:] == [3, 64, 64]
    out = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {INPUT_NAME: images.transpose(0, 3, 1, 2)}), strict=True))
    assert out["labels"].dtype == np.int32
    np.testing.assert_array_equal(out["labels"], out["logits"].argmax(axis=1))
    aux_ref = keras3_model.predict(images, verbose=0)[0].transpose(0, 3, 1, 2)
    assert np.abs(out["aux_logits"] - aux_ref).max() <= 1e-4 * np.abs(aux_ref).max()
    assert read_metadata(result.onnx_path).outputs["logits"]["layout"] == "NCHW"


def test_labels_only_and_normalisation_in_graph(keras3_h5, tmp_path, onnx_session, images):
    plain = _export(keras3_h5, tmp_path, name="plain.onnx")
    fused = _export(keras3_h5, tmp_path, name="fused.onnx", labels_only=True,
                    normalize_in_graph=True, mean=[127.0, 120.0, 110.0], std=[60.0, 50.0, 40.0])
    session = onnx_session(fused.onnx_path)
    assert [o.name for o in session.get_outputs()] == ["labels"]
    (labels,) = session.run(None, {INPUT_NAME: images})  # raw pixels in
    normalised = (images - np.float32([127.0, 120.0, 110.0])) / np.float32([60.0, 50.0, 40.0])
    (logits,) = onnx_session(plain.onnx_path).run(None, {INPUT_NAME: normalised})
    assert (labels == logits.argmax(-1)).mean() > 0.999
    assert read_metadata(fused.onnx_path).normalization["in_graph"] is True


def test_output_override_exports_the_named_output(keras3_h5, tmp_path):
    result = _export(keras3_h5, tmp_path, output_name="aux_logits")
    assert result.choice.logits == "aux_logits" and result.choice.stride == 4
    assert result.metadata.outputs["logits"]["stride"] == 4


def test_custom_objects_from_user_file(custom_layer_model, tmp_path):
    model, module = custom_layer_model
    result = _export(model, tmp_path, custom_objects=module)
    assert result.parity.passed


def test_trust_model_allows_lambda(lambda_h5, tmp_path):
    assert _export(lambda_h5, tmp_path, trust_model=True).parity.passed


def test_parity_failure_keeps_model_under_failed_name(keras3_h5, tmp_path, capsys):
    good = tmp_path / "model.onnx"
    code = main([str(keras3_h5), "-o", str(good), "--atol", "0", "--rtol", "1e-12", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert not good.exists()
    assert (tmp_path / "model.parity-failed.onnx").is_file()
    failed = json.loads((tmp_path / "model.parity-failed.json").read_text())
    assert failed["passed"] is False
    assert len(err.splitlines()) == 1 and "parity-failed" in err


def test_cli_json_summary(keras3_h5, tmp_path, capsys):
    assert main([str(keras3_h5), "-o", str(tmp_path / "m.onnx"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["passed"] is True and summary["onnx"].endswith("m.onnx")
    assert {"loading", "total"} <= {k.split(" ")[0] for k in summary["timings_s"]}


@pytest.mark.parametrize("opset", [13, 18])
def test_opset_option(keras3_h5, tmp_path, opset):
    result = _export(keras3_h5, tmp_path, opset=opset)
    model = onnx.load(str(result.onnx_path))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opset


@pytest.mark.parametrize("form", ["keep", "decomposed", "attention"])
def test_attention_forms_keep_parity(blog_h5, tmp_path, form):
    result = _export(blog_h5, tmp_path, attention=form)
    _assert_parity(result)
    attention = read_metadata(result.onnx_path).attention
    assert attention["form"] == form
    model = onnx.load(str(result.onnx_path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == (23 if form == "attention" else 17)
    assert ("Attention" in {n.op_type for n in model.graph.node}) == (form == "attention")


def test_attention_auto_is_recorded(keras3_h5, tmp_path):
    attention = _export(keras3_h5, tmp_path).metadata.attention
    assert attention["requested"] == "auto" and attention["form"] == "decomposed"
    assert attention["reason"]


def test_export_is_deterministic_within_a_process(keras3_h5, tmp_path):
    first = _export(keras3_h5, tmp_path, name="a.onnx", argmax=True)
    second = _export(keras3_h5, tmp_path, name="b.onnx", argmax=True)
    assert first.onnx_path.read_bytes() == second.onnx_path.read_bytes()
