"""The TensorRT preflight (``backends.tensorrt.preflight``): NVIDIA's published ONNX-parser
rules, checked without TensorRT. Every graph form the TensorRT backend can produce passes it
(made through the build's own path, ``builder.preflight``, on hand-built cores: no
TensorFlow); the ONNX Runtime forms and small graphs breaking each rule family are flagged
with the right rule. This is the rules, not a TensorRT parser: nothing here ran TensorRT."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from e2e_models import save, segnet
from onnx import TensorProto, helper, numpy_helper

from ocr_deploy.backends.tensorrt.options import TensorRTOptions
from ocr_deploy.backends.tensorrt.parser_rules import GRAPH_RULES, OP_RULES, RULES
from ocr_deploy.backends.tensorrt.preflight import (
    PreflightError,
    check_before_parse,
    preflight,
    target_version,
)
from ocr_deploy.builder.end_to_end import EndToEndRequest
from ocr_deploy.builder.preflight import preflight_forms
from ocr_deploy.builder.request import BuildRequest
from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.attention import apply_attention_form
from ocr_deploy.graph.core_model import build_core_model
from ocr_deploy.graph.end_to_end import make_end_to_end

RANGE = ImageSizes((5, 6), (40, 50))
DOWN, UP, SAME = ImageSizes.fixed(7, 9), ImageSizes.fixed(25, 41), ImageSizes.fixed(12, 16)
ONE_SIDE = ImageSizes((12, 6), (12, 50))
ALL = ("fp32", "fp16", "int8")


def _many_classes() -> onnx.ModelProto:
    return segnet("NHWC", classes=300)


# (core, end-to-end request or None, precisions): the forms a TensorRT build makes
CORES = {
    "nhwc": lambda: segnet("NHWC"),
    "nchw_argmax": lambda: segnet("NCHW", labels="also"),
    "nhwc_labels_only": lambda: segnet("NHWC", labels="only"),
    "nchw_labels_only": lambda: segnet("NCHW", labels="only"),
    "normalise_in_graph": lambda: segnet("NCHW", normalize=False),
    "strided": lambda: segnet("NCHW", stride=2),
    "grey": lambda: segnet("NHWC", channels=1),
    "many_classes": _many_classes,
}
FORMS = [
    *[(core, None) for core in CORES],
    *[(core, EndToEndRequest(sizes)) for core in CORES
      for sizes in (DOWN, UP, SAME, RANGE)],
    ("nhwc", EndToEndRequest(ONE_SIDE)),
    ("nhwc", EndToEndRequest(RANGE, "BGR", scores=True)),
    ("nchw_argmax", EndToEndRequest(UP, scores=True)),
    *[(core, EndToEndRequest(sizes, labels_form=labels, argmax_form=argmax))
      for core in ("nhwc", "nchw_argmax", "many_classes") for sizes in (UP, RANGE)
      for labels in ("dense", "boundary") for argmax in ("argmax", "compare")],
]


def _id(form) -> str:
    core, e2e = form
    if e2e is None:
        return f"{core}-core"
    return (f"{core}-e2e-{e2e.sizes.describe().replace(' ', '')}-{e2e.color_order}"
            f"{'-scores' if e2e.scores else ''}-{e2e.labels_form}-{e2e.argmax_form}")


@pytest.mark.parametrize("typing", ["strong", "weak"])
@pytest.mark.parametrize("form", FORMS, ids=[_id(f) for f in FORMS])
def test_every_tensorrt_form_passes(tmp_path, form, typing):
    """The graphs the build would parse (core or end-to-end, FP32, FP16 and INT8 Q/DQ in
    the placement of either typing: the typing changes only INT8's), for JetPack 6's
    TensorRT and the newest 10.x."""
    core, e2e = form
    path = save(CORES[core](), tmp_path, core)
    request = BuildRequest(onnx=path, backend="tensorrt", end_to_end=e2e, backend_options={
        "tensorrt": TensorRTOptions(builder_flags=typing == "weak")})
    precisions = ALL if typing == "strong" else ("int8",)
    for version in ("10.3", "10.15"):
        result = preflight_forms(request, precisions, version)
        problems = [f"{f['form']} {f['precision']}: {x['node']} {x['rule']} {x['detail']}"
                    for f in result["forms"] for x in f["findings"]]
        assert result["accepted"] and not problems, problems
        assert len(result["forms"]) == len(precisions) * (1 + (e2e is not None))
    int8 = [f for f in result["forms"] if f["precision"] == "int8"]
    assert all(f["nodes"] > 8 for f in int8)  # Q/DQ nodes are there to judge


@pytest.mark.parametrize("form", ["exported", "decomposed", "decomposed_mul_q", "attention"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_attention_core_forms_pass(form, dtype):
    """The benchmark cores as the TensorRT benchmark builds them; the Attention op needs
    10.14 (judged by the 10.15 matrix: 4-D Q/K/V, heads in the shape)."""
    model = build_core_model(form, keys=5, depth=16, dtype=dtype, target="tensorrt")
    assert preflight(model, "10.15").accepted, preflight(model, "10.15").findings
    old = preflight(model, "10.3")
    if form == "attention":
        assert {f.rule for f in old.findings} == {"attention:version"}
    else:
        assert old.accepted


def test_attention_forms_of_a_model_pass_and_compute_the_same():
    """A rank-3 core inside a graph: the TensorRT Attention form is 4-D (one head) and
    computes what the ONNX Runtime form (3-D, q_num_heads=1) computes."""
    import onnxruntime as ort

    exported = build_core_model("exported", keys=5, depth=16)
    trt, _ = apply_attention_form(exported, "attention", "tensorrt")
    ours, _ = apply_attention_form(exported, "attention", "onnxruntime")
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
             (("query", (2, 9, 16)), ("key", (2, 5, 16)), ("value", (2, 5, 16)))}

    def run(model):
        return ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    np.testing.assert_allclose(run(trt), run(ours), rtol=0, atol=1e-6)
    assert preflight(trt, "10.15").accepted
    assert {f.rule for f in preflight(ours, "10.15").findings} == {"attention:4d"}


# ------------------------------------------------------------- the ONNX Runtime forms


@pytest.mark.parametrize("core, sizes, expected", [
    (_many_classes, UP, {"tensor:types"}),  # uint16 labels
    (lambda: segnet("NHWC"), RANGE, {"tensor:fp64", "op:Shape"}),  # float64 tables
    (lambda: segnet("NHWC"), UP, {"tensor:uint8-edges", "op:Transpose", "cast:uint8"}),
    (lambda: segnet("NCHW", labels="only"), UP, {"op:Gather", "tensor:uint8-edges"}),
])
def test_onnxruntime_forms_are_flagged(core, sizes, expected):
    wrapped, _ = make_end_to_end(core(), sizes, target="onnxruntime")
    found = {f.rule for f in preflight(wrapped, "10.15").findings}
    assert expected <= found, found


# ------------------------------------------------------------- one graph per rule family

def _graph(nodes, inputs, outputs, initializers=(), opset=19) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs], list(initializers)),
        opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


F, U8 = TensorProto.FLOAT, TensorProto.UINT8


def _array(name: str, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def _conv_weights_dq(axis: int):
    """x -> Conv with per-channel INT8 weights dequantised along ``axis``."""
    return _graph(
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=axis, name="dq"),
         helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        [("x", F, [1, 2, 4, 4])], [("y", F, [1, 2, 4, 4])],
        [_array("wq", np.ones((2, 2, 1, 1)), np.int8), _array("ws", [0.1, 0.2]),
         _array("wz", [0, 0], np.int8)])


def _qdq(zero, scale, axis: int = 1):
    return _graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis, name="q"),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis, name="dq")],
        [("x", F, [1, 2, 4, 4])], [("y", F, [1, 2, 4, 4])],
        [_array("s", scale), _array("z", zero, np.int8)])


def _attention(rank: int, heads: bool):
    shape = [2, 1, 6, 8] if rank == 4 else [2, 6, 8]
    extra = {"q_num_heads": 1, "kv_num_heads": 1} if heads else {}
    return _graph([helper.make_node("Attention", ["q", "k", "v"], ["y"], name="att", **extra)],
                  [(n, F, shape) for n in "qkv"], [("y", F, shape)], opset=23)


NEGATIVE = {
    "op:Shape": _graph([helper.make_node("Shape", ["x"], ["s"], name="shape")],
                       [("x", U8, [1, 4])], [("s", TensorProto.INT64, [2])]),
    "op:unlisted": _graph([helper.make_node("Hardmax", ["x"], ["y"], name="hardmax")],
                          [("x", F, [1, 4])], [("y", F, [1, 4])]),
    "tensor:types": _graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT16,
                                             name="cast")],
                           [("x", F, [1, 4])], [("y", TensorProto.UINT16, [1, 4])]),
    "tensor:fp64": _graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE,
                                            name="cast")],
                          [("x", F, [1, 4])], [("y", TensorProto.DOUBLE, [1, 4])]),
    "tensor:uint8-edges": _graph(
        [helper.make_node("Cast", ["x"], ["b"], to=U8, name="to_byte"),
         helper.make_node("Cast", ["b"], ["y"], to=F, name="back")],
        [("x", F, [1, 4])], [("y", F, [1, 4])]),
    "cast:uint8": _graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32,
                                           name="cast")],
                         [("x", U8, [1, 4])], [("y", TensorProto.INT32, [1, 4])]),
    "qdq:zero-point": _qdq([3], [0.1]),
    "qdq:per-tensor-activations": _qdq([0, 0], [0.1, 0.2]),
    "qdq:per-channel-weights": _conv_weights_dq(axis=1),
    "qdq:quantized-only-through-qdq": _graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
         helper.make_node("Reshape", ["q", "shape"], ["r"], name="reshape"),
         helper.make_node("DequantizeLinear", ["r", "s", "z"], ["y"], name="dq")],
        [("x", F, [1, 4])], [("y", F, [4, 1])],
        [_array("s", 0.1), _array("z", 0, np.int8), _array("shape", [4, 1], np.int64)]),
    "attention:4d": _attention(3, heads=True),
    "resize:modes": _graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="resize")],
        [("x", F, [1, 1, 4, 4])], [("y", F, [1, 1, 8, 8])], [_array("scales", [1, 1, 2, 2])]),
}


@pytest.mark.parametrize("rule", sorted(NEGATIVE))
def test_each_rule_family_is_flagged(rule):
    model = NEGATIVE[rule]
    onnx.checker.check_model(model, full_check=True)
    findings = preflight(model, "10.15").findings
    assert rule in {f.rule for f in findings}, findings
    finding = next(f for f in findings if f.rule == rule)
    assert finding.op and finding.node and finding.source == RULES[rule].source
    assert "\n" not in finding.line() and rule in finding.line()


def test_conforming_twins_of_the_negative_graphs_pass():
    """The same graphs done the way the rules ask: the rules flag the fault, not the op."""
    assert preflight(_conv_weights_dq(axis=0), "10.3").accepted
    assert preflight(_qdq([0], [0.1]), "10.3").accepted
    assert preflight(_attention(4, heads=False), "10.15").accepted
    through_float = _graph(
        [helper.make_node("Cast", ["x"], ["f"], to=F, name="float"),
         helper.make_node("Cast", ["f"], ["i"], to=TensorProto.INT32, name="int"),
         helper.make_node("Shape", ["f"], ["s"], name="shape")],
        [("x", U8, [1, 4])], [("i", TensorProto.INT32, [1, 4]), ("s", TensorProto.INT64, [2])])
    assert preflight(through_float, "10.3").accepted


def test_the_rule_table():
    """One table, every rule with a source; where NVIDIA's sources disagree the rule says
    which reading it takes; each operator row names both matrices it comes from."""
    assert len(RULES) == len(OP_RULES) + len(GRAPH_RULES)
    for rule in RULES.values():
        assert rule.summary and rule.source, rule.id
        json.dumps(rule.to_dict())
    for rule in OP_RULES:
        assert "10.15" in rule.types and "10.15" in rule.source
    assert "UINT8" not in RULES["op:Shape"].types["10.1-GA"]
    assert "stricter" in RULES["cast:uint8"].to_dict()
    assert RULES["op:Attention"].since == (10, 14)
    attention = NEGATIVE["attention:4d"]
    assert "attention:version" in {f.rule for f in preflight(attention, "10.13").findings}
    assert {f.rule for f in preflight(attention, "10.14").findings} == {"attention:4d"}


def test_target_version():
    assert target_version("10.15") == "10.15"
    for bad in ("8.6", "eleven", ""):
        with pytest.raises(BadInputError, match="TensorRT version >= 10"):
            target_version(bad)


# ------------------------------------------------------------- before every TensorRT parse

def test_build_refuses_findings_the_parser_also_refuses():
    """Stubbed parser (no TensorRT here): findings with a refusing parser are exit 2 with
    one line per finding; with a parser that takes the graph they are warnings."""
    data = NEGATIVE["cast:uint8"].SerializeToString()
    with pytest.raises(PreflightError) as info:
        check_before_parse(data, "10.3", lambda _: ["stub: unsupported cast"], print)
    assert info.value.exit_code == 2 and info.value.details
    assert all("[cast:uint8]" in line for line in info.value.details)
    warned = []
    report = check_before_parse(data, "10.3", lambda _: [], warned.append)
    assert not report.accepted and len(warned) == len(report.findings) + 1
    assert "the parser decides" in warned[-1]
    calls = []
    clean = NEGATIVE["tensor:fp64"]
    clean.graph.node[0].attribute[0].i = F
    clean.graph.output[0].type.tensor_type.elem_type = F
    check_before_parse(clean.SerializeToString(), "10.3", calls.append, print)
    assert not calls  # nothing found: the parser is not asked twice


def test_build_artifact_runs_the_preflight_before_building(monkeypatch, tmp_path):
    """``build_artifact`` with a stubbed TensorRT (its version only) and a stubbed parser:
    a graph the rules refuse never reaches the engine build."""
    from ocr_deploy.backends.tensorrt import build, engine, library
    from ocr_deploy.contract.metadata import read_metadata

    monkeypatch.setattr(library, "import_tensorrt",
                        lambda *_: types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(engine, "parse_errors", lambda *_, **__: ["stub refusal"])
    monkeypatch.setattr(engine, "build_engine", lambda *_, **__: pytest.fail("built"))
    wrapped, meta = make_end_to_end(segnet("NHWC"), RANGE, target="onnxruntime")
    with pytest.raises(PreflightError, match="finding"):
        build.build_artifact(wrapped.SerializeToString(), tmp_path / "t", tmp_path / "a",
                             meta, "fp32", TensorRTOptions(batch=(1, 1, 1)), print)
    assert read_metadata(wrapped).end_to_end


# ------------------------------------------------------------- ocr-build-engine --preflight

def _refused_core(tmp_path: Path) -> Path:
    """A core whose middle goes through float64 (not a graph this project makes)."""
    core = segnet("NCHW")
    relu = next(n for n in core.graph.node if n.op_type == "Relu")
    source = relu.input[0]
    core.graph.node.extend([
        helper.make_node("Cast", [source], ["wide"], to=TensorProto.DOUBLE, name="wide"),
        helper.make_node("Cast", ["wide"], ["narrow"], to=F, name="narrow")])
    relu.input[0] = "narrow"
    from ocr_deploy.graph.index import toposort

    toposort(core)
    return save(core, tmp_path, "refused")


def test_cli_preflight(tmp_path, monkeypatch, capsys):
    from ocr_deploy.builder.cli import main

    monkeypatch.chdir(tmp_path)
    good = save(segnet("NHWC"), tmp_path, "good")
    before = sorted(tmp_path.rglob("*"))
    assert main([str(good), "--backend", "tensorrt", "--preflight", "--end-to-end",
                 "--image-range", "20x30:40x50", "--json", "--trt-version", "10.3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accepted"] and result["tensorrt_version"] == "10.3"
    assert [(f["form"].split(" ")[0], f["precision"]) for f in result["forms"]] == [
        (form, p) for p in ALL for form in ("core", "end-to-end")]
    assert "not a TensorRT run" in result["what"]
    refused = _refused_core(tmp_path)
    before.append(refused)
    assert main([str(refused), "--backend", "tensorrt", "--preflight", "--fp16"]) == 2
    out = capsys.readouterr().out
    assert "REFUSED" in out and "[tensor:fp64]" in out and "wide" in out
    assert sorted(tmp_path.rglob("*")) == sorted(before)  # nothing written
    assert main([str(good), "--backend", "onnxruntime", "--preflight"]) == 2
    assert main([str(good), "--backend", "tensorrt", "--preflight", "--trt-version",
                 "8.6"]) == 2
    assert main([str(good), "--backend", "tensorrt", "--fp32", "--trt-version", "10.3"]) == 2
    assert main([str(good), "--backend", "tensorrt"]) == 2  # a build needs a precision
    err = capsys.readouterr().err
    assert "--backend tensorrt with --preflight" in err and "TensorRT version >= 10" in err


def test_help_says_what_is_checked_and_what_needs_a_gpu():
    from ocr_deploy.builder.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "--preflight" in text and "--trt-version" in text
    assert "NVIDIA's published parser rules" in text and "Only a GPU with TensorRT" in text
    assert "default: the installed TensorRT's, else 10.3" in text


# ------------------------------------------------------------- DLA, on paper

def test_dla_names_the_nodes_that_fall_back_to_the_gpu():
    """With DLA asked, nodes whose layer DLA's published summary lacks (or whose limits it
    breaks) are named; that is GPU fallback, not a refusal. Shape arithmetic is left out."""
    from ocr_deploy.precision.fp16 import convert_fp16

    core = convert_fp16(segnet("NCHW", labels="also"))
    report = preflight(core, "10.3", dla=True)
    fallback = {f.node: f.rule for f in report.dla_gpu_fallback}
    assert report.accepted and fallback
    assert all(n.name not in fallback for n in core.graph.node if n.op_type in ("Conv", "Relu"))
    assert fallback["argmax_6"] == "dla:layer"
    assert preflight(core, "10.3").dla_gpu_fallback is None
    wrapped, _ = make_end_to_end(segnet("NCHW"), UP, target="tensorrt")
    dla = preflight(wrapped, "10.3", dla=True).dla_gpu_fallback
    assert not any(f.op == "Shape" for f in dla)  # shapes: known at build time
    assert {"dla:layer", "dla:limits"} <= {f.rule for f in dla}  # Gather; FP16 comparisons


@pytest.mark.parametrize("model, rule", [
    (_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
            [("x", F, [1, 2, 40, 40])], [("y", F, [1, 2, 7, 7])],
            [_array("w", np.ones((2, 2, 34, 34)))]), "dla:limits"),  # kernel over 32
    (_graph([helper.make_node("Concat", ["x", "x"], ["y"], axis=2, name="concat")],
            [("x", F, [1, 2, 4, 4])], [("y", F, [1, 2, 8, 4])]), "dla:limits"),
    (_graph([helper.make_node("MatMul", ["x", "x"], ["y"], name="matmul")],
            [("x", F, [1, 4, 4])], [("y", F, [1, 4, 4])]), "dla:layer"),
    (_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")],
            [("x", F, [1, 1, 1, 9000])], [("y", F, [1, 1, 1, 9000])]), "dla:dims"),
])
def test_dla_restrictions(model, rule):
    report = preflight(model, "10.3", dla=True)
    assert report.accepted and rule in {f.rule for f in report.dla_gpu_fallback}
    assert all(RULES[f.rule].source.startswith("TensorRT developer guide, 'Working with DLA'")
               for f in report.dla_gpu_fallback)


def test_dla_preflight_of_the_build(tmp_path):
    """``--dla-core``: the FP16 forms are judged with their GPU fallback; the precisions a
    DLA build refuses before parsing are reported refused."""
    path = save(segnet("NCHW"), tmp_path, "core")
    request = BuildRequest(onnx=path, backend="tensorrt", backend_options={
        "tensorrt": TensorRTOptions(dla_core=0)})
    result = preflight_forms(request, ALL, "10.3")
    verdicts = {f["precision"]: f for f in result["forms"]}
    assert verdicts["fp16"]["accepted"] and "dla_gpu_fallback" in verdicts["fp16"]
    assert not verdicts["int8"]["accepted"] and "--fp16 for DLA" in verdicts["int8"][
        "build_refuses"]
    assert not result["accepted"]


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.parametrize("config", ["demo", "cityscapes"])
def test_exported_models_pass_in_every_form(tmp_path, config):
    """Real exports (the demo OCRNet and the Cityscapes configuration at a small input: its
    widths, classes and ops, not its 512x1024 size), every precision, core and end-to-end
    fixed and range, for JetPack 6's TensorRT and the newest 10.x."""
    from ocr_deploy.export.pipeline import ExportRequest, export_model
    from ocr_deploy.model.ocrnet import OCRNetConfig, build_ocrnet
    from ocr_deploy.tf_env import import_keras3

    import_keras3()
    cfg = OCRNetConfig() if config == "demo" else replace(
        OCRNetConfig.cityscapes(), input_height=64, input_width=128)
    keras_path = tmp_path / f"{config}.keras"
    build_ocrnet(cfg).save(keras_path)
    onnx_path = export_model(ExportRequest(model=keras_path, output=tmp_path / f"{config}.onnx",
                                           argmax=True, quiet=True)).onnx_path
    for e2e in (None, EndToEndRequest(ImageSizes.fixed(120, 200)),
                EndToEndRequest(ImageSizes((48, 64), (240, 320)), labels_form="boundary")):
        request = BuildRequest(onnx=onnx_path, backend="tensorrt", end_to_end=e2e)
        for version in ("10.3", "10.15"):
            result = preflight_forms(request, ALL, version)
            problems = [f"{f['form']} {f['precision']}: {x['node']} {x['rule']}"
                        for f in result["forms"] for x in f["findings"]]
            assert result["accepted"] and not problems, problems
