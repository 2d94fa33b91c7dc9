"""Metadata is validated (schema: types, ranges, format version) and checked against the
graph it travels with; a tampered or foreign model is exit 2 naming what is wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ocr_deploy.contract.metadata import INPUT_NAME, ExportMetadata, check_schema, read_metadata
from ocr_deploy.contract.signature import check_onnx
from ocr_deploy.errors import EXIT_BAD_INPUT, BadInputError, MetadataError
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.predict_cli import main as predict_main


def _tampered(source, folder, name="tampered.onnx", **changes):
    """A copy of ``source`` with some ``ocr_deploy.*`` values replaced (JSON values)."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        key = prop.key.removeprefix("ocr_deploy.")
        if key in changes:
            prop.value = json.dumps(changes[key])
    path = folder / name
    onnx.save(model, str(path))
    return path


def _props(source) -> dict:
    return {p.key: p.value for p in onnx.load(str(source)).metadata_props}


@pytest.mark.parametrize("changes, key", [
    ({"num_classes": "seven"}, "num_classes"),
    ({"num_classes": 0}, "num_classes"),
    ({"outputs": [{"kind": "logits"}, {"kind": "labels"}]}, "outputs"),
    ({"outputs": {"logits": {"kind": "scores"}}}, "outputs"),
    ({"format_version": 99}, "format_version"),
    ({"input_height": -64}, "input_height"),
    ({"input_layout": "HWCN"}, "input_layout"),
    ({"normalization": {"mean": [0, 0, 0], "std": [0, 1, 1]}}, "normalization"),
    ({"normalization": {"mean": [0, 0], "std": [1, 1, 1]}}, "normalization"),
    ({"palette": [[0, 0, 300]]}, "palette"),
    ({"class_names": ["a"]}, "class_names"),
    ({"input_channels": True}, "input_channels"),
])
def test_schema_violations_name_the_key(nhwc_onnx, tmp_path, changes, key):
    path = _tampered(nhwc_onnx, tmp_path, **changes)
    with pytest.raises(MetadataError, match=rf"expected ocr_deploy\.{key} as ") as info:
        read_metadata(path)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in info.value.one_line() and "re-export" in info.value.one_line()
    with pytest.raises(MetadataError, match=rf"ocr_deploy\.{key}"):
        Segmenter.open(path)


def test_valid_metadata_passes_and_missing_keys_are_named(nhwc_onnx):
    meta = read_metadata(nhwc_onnx)
    assert meta.num_classes == 4
    fields = meta.__dict__
    check_schema(fields)
    check_schema({**fields, "outputs": {"probs": {"kind": "probabilities", "layout": "NHWC",
                                                  "stride": 1}}})
    with pytest.raises(MetadataError, match=r"ocr_deploy\.num_classes as a value \(it is "
                                            r"required\), found nothing"):
        check_schema({k: v for k, v in fields.items() if k != "num_classes"})
    with pytest.raises(MetadataError, match="format version 1"):
        ExportMetadata.from_dict({k: v for k, v in fields.items() if k != "format_version"})


@pytest.mark.parametrize("changes, match", [
    ({"input_height": 32}, r"input shaped \[batch, 32, 64, 3\] \(NHWC\).*found \[-?1, 64, 64, 3\]"),
    ({"input_layout": "NCHW"}, r"shaped \[batch, 3, 64, 64\] \(NCHW\)"),
    ({"input_name": "pixels"}, r"the input 'pixels' named in its metadata, found 'image'"),
    ({"num_classes": 5, "class_names": []}, r"output 'logits' as float logits with 5 classes"),
    ({"outputs": {"logits": {"kind": "logits", "layout": "NHWC", "stride": 1}}},
     r"the outputs \['logits'\] named in its metadata, found outputs \['labels', 'logits'\]"),
    ({"outputs": {"logits": {"kind": "logits", "layout": "NHWC", "stride": 4},
                  "labels": {"kind": "labels", "layout": "NHW", "stride": 1}}},
     r"output 'logits' at 1/4 of the 64-pixel input height"),
])
def test_metadata_that_lies_about_the_graph_is_refused(nhwc_onnx, tmp_path, changes, match):
    path = _tampered(nhwc_onnx, tmp_path, **changes)
    read_metadata(path)  # schema-valid: only the graph shows the lie
    with pytest.raises(MetadataError, match=match):
        check_onnx(path)
    with pytest.raises(MetadataError, match=match):
        Segmenter.open(path)


def _add_graph(inputs: list[str], shape: list) -> onnx.ModelProto:
    nodes = [helper.make_node("Add", [inputs[0], inputs[-1]], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["labels_64"], axis=3, keepdims=0),
             helper.make_node("Cast", ["labels_64"], ["labels"], to=TensorProto.INT32)]
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                           for n in inputs],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("labels", TensorProto.INT32, shape[:3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("inputs, shape, match", [
    ([INPUT_NAME], ["N", 64, 64, 3], r"output 'logits' as float logits with 4 classes"),
    (["A", "B"], [1, 64, 64, 4], r"one image input, found 2 inputs"),
])
def test_foreign_graph_with_copied_metadata_is_refused(nhwc_onnx, tmp_path, inputs, shape,
                                                       match):
    model = _add_graph(inputs, shape)
    for key, value in _props(nhwc_onnx).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(MetadataError, match=match):
        check_onnx(path)
    with pytest.raises(BadInputError, match=match) as info:  # the runtime's own check first
        Segmenter.open(path)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_engine_sidecar_metadata_is_validated(nhwc_onnx, tmp_path):
    from ocr_deploy.backends import get

    engine_metadata = get("tensorrt").metadata
    fields = read_metadata(nhwc_onnx).__dict__
    assert engine_metadata("m.engine", {"metadata": fields}).num_classes == 4
    with pytest.raises(MetadataError, match=r"m\.engine: expected ocr_deploy\.input_width"):
        engine_metadata("m.engine", {"metadata": {**fields, "input_width": "64"}})


def test_ocr_predict_exits_2_on_tampered_metadata(nhwc_onnx, tmp_path, capsys):
    path = _tampered(nhwc_onnx, tmp_path, num_classes="seven")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert predict_main([str(path), str(image), "-o", str(tmp_path / "out")]) == 2
    assert "ocr_deploy.num_classes as an integer" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
