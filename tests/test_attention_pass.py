"""The attention-core graph pass: matching, rewriting, parity and refusals.

Fast tests use small hand-built ONNX graphs. The slow ones export three small OCRNets
(Keras 3 layers, blog-style conv and dense key/value) once per session with
``export_model`` and check every rewritten form against the un-rewritten export on
ONNX Runtime CPU, with its graph optimisations on and off (on, ORT fuses the scale into
its MatMul kernel and the forms often agree bit for bit; off, each op runs as written).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocr_deploy.backends import BACKENDS
from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.attention import apply_attention_form
from ocr_deploy.graph.core_model import CORE_FORMS, build_core_model
from ocr_deploy.graph.find import find_attention_cores

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.xdist_group("attention")  # one worker exports the models once

MAX_REL_ERR = 1e-4
OPT_LEVELS = {"optimized": "ORT_ENABLE_ALL", "unoptimized": "ORT_DISABLE_ALL"}


def run(model, feeds: dict, level: str = "optimized", extra_outputs=()) -> list[np.ndarray]:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for name in extra_outputs:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[level])
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_parity(reference: np.ndarray, candidate: np.ndarray) -> None:
    rel = float(np.abs(reference - candidate).max() / np.abs(reference).max())
    agreement = float((reference.argmax(-1) == candidate.argmax(-1)).mean())
    assert rel <= MAX_REL_ERR, f"max abs error / logit scale = {rel:.2e}"
    assert agreement == 1.0, f"argmax agreement {100 * agreement:.4f}%"


def ops(model) -> list[str]:
    return [node.op_type for node in model.graph.node]


# ---------------------------------------------------------------- hand-built graphs

def core_graph(query_producer: str = "dense", scale_op: str = "Mul", depth: int = 8,
               keys: int = 3, pixels: int = 12, share_query: bool = False):
    """x [B,pixels,depth] -> (query branch) -> core with keys from a constant-free input."""
    rng = np.random.default_rng(1)
    weights = {"w": rng.standard_normal((depth, depth)).astype(np.float32),
               "b": rng.standard_normal(depth).astype(np.float32),
               "factor": np.float32(depth ** -0.5 if scale_op == "Mul" else depth ** 0.5)}
    x_shape = ["B", pixels, depth]
    nodes = []
    if query_producer == "dense":
        nodes += [helper.make_node("MatMul", ["x", "w"], ["xw"], name="dense"),
                  helper.make_node("Add", ["xw", "b"], ["xb"], name="bias"),
                  helper.make_node("Relu", ["xb"], ["q"], name="relu")]
    elif query_producer == "batchnorm":  # x is channels-first [B, depth, pixels]
        x_shape = ["B", depth, pixels]
        weights.update(gamma=rng.uniform(0.5, 2, depth).astype(np.float32),
                       mean=rng.standard_normal(depth).astype(np.float32),
                       var=rng.uniform(0.5, 2, depth).astype(np.float32))
        nodes += [helper.make_node("BatchNormalization", ["x", "gamma", "b", "mean", "var"],
                                   ["xn"], name="bn"),
                  helper.make_node("Relu", ["xn"], ["xr"], name="relu"),
                  helper.make_node("Transpose", ["xr"], ["q"], perm=[0, 2, 1], name="nhwc")]
    else:
        nodes += [helper.make_node("Relu", ["x"], ["q"], name="relu")]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
              helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
              helper.make_node(scale_op, ["s", "factor"], ["s2"], name="scale"),
              helper.make_node("Softmax", ["s2"], ["p"], axis=-1, name="softmax"),
              helper.make_node("MatMul", ["p", "v"], ["ctx"], name="pv")]
    outputs = [helper.make_tensor_value_info("ctx", TensorProto.FLOAT, ["B", pixels, depth])]
    if share_query:
        outputs.append(helper.make_tensor_value_info("q", TensorProto.FLOAT,
                                                     ["B", pixels, depth]))
    graph = helper.make_graph(
        nodes, "core",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
         helper.make_tensor_value_info("k", TensorProto.FLOAT, ["B", keys, depth]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, ["B", keys, depth])],
        outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {"x": rng.standard_normal((2, *x_shape[1:])).astype(np.float32),
             "k": rng.standard_normal((2, keys, depth)).astype(np.float32),
             "v": rng.standard_normal((2, keys, depth)).astype(np.float32)}
    return model, feeds


def conv_net():
    """A plain conv net: no attention anywhere."""
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", [INPUT_NAME, "w"], ["c"], name="conv"),
         helper.make_node("Softmax", ["c"], ["probs"], axis=1, name="softmax")],
        "convnet", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("level", OPT_LEVELS)
def test_core_forms_compute_the_same(level):
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
             (("query", (1, 64, 16)), ("key", (1, 5, 16)), ("value", (1, 5, 16)))}
    reference = run(build_core_model("exported", keys=5, depth=16), feeds, level)[0]
    for form in CORE_FORMS:
        model = build_core_model(form, keys=5, depth=16)
        fed = {**feeds, "query": feeds["query"] * np.float32(0.25)} \
            if form == "decomposed" else feeds
        np.testing.assert_allclose(run(model, fed, level)[0], reference, rtol=0, atol=1e-6)
    assert ops(build_core_model("attention")) == ["Attention"]
    assert ops(build_core_model("decomposed_mul_q")) == \
        ["Transpose", "Mul", "MatMul", "Softmax", "MatMul"]


def test_power_of_two_scale_is_folded_exactly_through_a_bias():
    model, feeds = core_graph("dense", depth=16)  # scale 16**-0.5 = 2**-2
    rewritten, info = apply_attention_form(model, "decomposed")
    change = info["cores"][0]["change"]
    assert change["exact"] and "MatMul 'dense'" in change["scale_moved_to"]
    assert len(change["new_constants"]) == 2  # the Add's bias and the MatMul's weights
    assert ops(rewritten) == ["MatMul", "Add", "Relu", "Transpose", "MatMul", "Softmax",
                              "MatMul"]
    # exact: with ORT's fusions off, the rewritten graph reproduces the scores bit for bit
    np.testing.assert_array_equal(run(rewritten, feeds, "unoptimized")[0],
                                  run(model, feeds, "unoptimized")[0])


def test_power_of_two_scale_is_folded_exactly_into_a_batchnorm():
    model, feeds = core_graph("batchnorm", depth=64)  # scale 64**-0.5 = 2**-3
    rewritten, info = apply_attention_form(model, "decomposed")
    change = info["cores"][0]["change"]
    assert change["exact"] and "BatchNormalization 'bn'" in change["scale_moved_to"]
    assert "Mul" not in ops(rewritten)
    np.testing.assert_array_equal(run(rewritten, feeds, "unoptimized")[0],
                                  run(model, feeds, "unoptimized")[0])


def test_other_scales_become_a_mul_on_the_query():
    model, feeds = core_graph("dense", depth=8)  # 8**-0.5 is not a power of two
    rewritten, info = apply_attention_form(model, "decomposed")
    change = info["cores"][0]["change"]
    assert not change["exact"] and "not a power of two" in change["not_folded_because"]
    scaled = next(n for n in rewritten.graph.node if n.op_type == "Mul")
    assert scaled.input[0] == "q"
    first = next(n for n in rewritten.graph.node if n.name == "qk")
    assert first.input[0] == scaled.output[0]
    assert_parity(run(model, feeds)[0], run(rewritten, feeds)[0])


def test_query_read_elsewhere_is_not_folded():
    model, feeds = core_graph("dense", depth=16, share_query=True)
    rewritten, info = apply_attention_form(model, "decomposed")
    assert "also read elsewhere" in info["cores"][0]["change"]["not_folded_because"]
    for ref, out in zip(run(model, feeds), run(rewritten, feeds), strict=True):
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_div_by_sqrt_depth_is_a_scale():
    model, feeds = core_graph("relu", scale_op="Div", depth=16)
    (core,) = find_attention_cores(model).cores
    assert core.scale == pytest.approx(0.25)
    for form in ("decomposed", "attention"):
        rewritten, info = apply_attention_form(model, form)
        assert_parity(run(model, feeds)[0], run(rewritten, feeds)[0])
    assert info["opset"] == 23


@pytest.mark.parametrize("form", ["decomposed", "attention"])
def test_refuses_a_model_without_a_core(form):
    with pytest.raises(BadInputError) as caught:
        apply_attention_form(conv_net(), form, source="convnet.onnx")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("convnet.onnx: expected an OCRNet attention core")
    assert "no such pattern" in message and "--attention keep" in message


def test_auto_and_keep_leave_a_model_without_a_core_alone():
    model = conv_net()
    for form in ("auto", "keep"):
        rewritten, info = apply_attention_form(model, form)
        assert info["form"] == "keep" and info["cores"] == []
        assert rewritten.SerializeToString() == model.SerializeToString()


def test_refuses_an_ambiguous_core():
    model, _ = core_graph("relu", scale_op="Add")  # a mask/bias added to the scores
    with pytest.raises(BadInputError, match=r"Softmax 'softmax'.*Add 'scale'"):
        apply_attention_form(model, "decomposed", source="masked.onnx")
    for node in model.graph.node:
        if node.op_type == "Add":
            node.op_type = "Mul"
        if node.op_type == "Softmax":
            node.attribute[0].i = 1  # over the queries, not the keys
    with pytest.raises(BadInputError, match="axis 1 of a rank-3 tensor"):
        apply_attention_form(model, "decomposed")
    assert apply_attention_form(model, "keep")[1]["problems"]
    rewritten, info = apply_attention_form(model, "auto")  # auto never fails: left alone
    assert info["form"] == "keep" and "axis 1 of a rank-3 tensor" in info["left_as_exported"][0]
    assert rewritten.SerializeToString() == model.SerializeToString()


def test_scale_constant_first_is_a_scale():
    model, feeds = core_graph("relu", depth=16)
    scale = next(n for n in model.graph.node if n.name == "scale")
    scale.input[:] = [scale.input[1], scale.input[0]]  # s * scores
    (core,) = find_attention_cores(model).cores
    assert core.scale == pytest.approx(0.25)
    for form in ("decomposed", "attention"):
        rewritten, _ = apply_attention_form(model, form)
        assert_parity(run(model, feeds)[0], run(rewritten, feeds)[0])


def multihead_graph(heads: int = 2, depth: int = 6, keys: int = 3, pixels: int = 10,
                    with_mask: bool = False):
    """A per-head rank-4 core (q [B,h,N,d], k [B,h,K,d]) plus, optionally, a second
    softmax over masked scores (not a core) in the same graph."""
    rng = np.random.default_rng(2)
    factor = np.asarray([[[depth ** -0.5]]], np.float32)  # uniform, not a scalar shape
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="kt"),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
             helper.make_node("Mul", ["factor", "s"], ["s2"], name="scale"),
             helper.make_node("Softmax", ["s2"], ["p"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["p", "v"], ["ctx"], name="pv")]
    outputs = [helper.make_tensor_value_info("ctx", TensorProto.FLOAT,
                                             ["B", heads, pixels, depth])]
    if with_mask:
        nodes += [helper.make_node("MatMul", ["q", "kt"], ["ms"], name="qk_masked"),
                  helper.make_node("Add", ["ms", "mask"], ["ms2"], name="mask"),
                  helper.make_node("Softmax", ["ms2"], ["mp"], axis=-1, name="softmax_masked"),
                  helper.make_node("MatMul", ["mp", "v"], ["mctx"], name="pv_masked")]
        outputs.append(helper.make_tensor_value_info("mctx", TensorProto.FLOAT,
                                                     ["B", heads, pixels, depth]))
    mask = rng.standard_normal((1, 1, 1, keys)).astype(np.float32)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", heads, size, depth])
              for n, size in (("q", pixels), ("k", keys), ("v", keys))]
    graph = helper.make_graph(nodes, "mha", inputs, outputs,
                              [numpy_helper.from_array(factor, "factor"),
                               numpy_helper.from_array(mask, "mask")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {n: rng.standard_normal((2, heads, size, depth)).astype(np.float32)
             for n, size in (("q", pixels), ("k", keys), ("v", keys))}
    return model, feeds


def test_per_head_rank4_core_in_every_form():
    model, feeds = multihead_graph()
    (core,) = find_attention_cores(model).cores
    assert core.shapes["query"] == ["B", 2, 10, 6] and core.scale == pytest.approx(6 ** -0.5)
    for form in ("decomposed", "attention"):
        rewritten, _info = apply_attention_form(model, form)
        assert_parity(run(model, feeds)[0], run(rewritten, feeds)[0])
        assert "Softmax" not in ops(rewritten) if form == "attention" else True
    first = next(n for n in apply_attention_form(model, "decomposed")[0].graph.node
                 if n.name == "qk")
    assert first.input[0] != "q"  # the scale now multiplies Q


def test_auto_rewrites_what_it_understands_and_reports_the_rest():
    model, feeds = multihead_graph(with_mask=True)
    rewritten, info = apply_attention_form(model, "auto")
    assert info["form"] == "decomposed" and len(info["cores"]) == 1
    (left,) = info["left_as_exported"]
    assert "softmax_masked" in left and "Add 'mask'" in left
    for ref, out in zip(run(model, feeds), run(rewritten, feeds), strict=True):
        assert_parity(ref, out)
    with pytest.raises(BadInputError, match="softmax_masked"):
        apply_attention_form(model, "decomposed")


def test_refuses_unknown_form_and_target():
    model, _ = core_graph()
    with pytest.raises(BadInputError, match="attention form"):
        apply_attention_form(model, "fused")
    with pytest.raises(BadInputError, match="a backend among"):
        apply_attention_form(model, "auto", target="tpu")


# ---------------------------------------------------------------- exported OCRNets

MODELS = ("keras3", "blog_conv", "blog_dense")


def _randomize(model, gain: float, seed: int = 0) -> None:
    """Random weights and BN statistics that make the attention neither uniform nor one-hot
    (fresh initialisers give near-identical keys, so any rewrite would look exact); the
    kernels' variance is ``gain / fan_in``."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        path = getattr(weight, "path", weight.name)
        shape = tuple(weight.shape)
        if "gamma" in path or "moving_variance" in path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "beta" in path or "moving_mean" in path or "bias" in path:
            value = rng.normal(0.0, 0.5, shape)
        else:
            value = rng.normal(0.0, np.sqrt(gain / np.prod(shape[:-1])), shape)
        values.append(value.astype(np.float32))
    model.set_weights(values)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict:
    """name -> (onnx.ModelProto, key_channels, classes), exported with ``export_model``."""
    pytest.importorskip("tensorflow")
    from ocr_deploy.export.pipeline import ExportRequest, export_model
    from ocr_deploy.tf_env import import_keras3

    import_keras3()
    from blog_style import build_blog_style_ocrnet

    from ocr_deploy.model.ocrnet import OCRNetConfig, build_ocrnet

    folder = tmp_path_factory.mktemp("attention_models")
    config = OCRNetConfig()
    keras3 = build_ocrnet(config)
    _randomize(keras3, gain=1.5)
    keras3.save(folder / "keras3.keras")
    sizes = {"keras3": (config.key_channels, config.num_classes)}
    for projection in ("conv", "dense"):
        blog = build_blog_style_ocrnet(kv_projection=projection, key_channels=16,
                                       num_classes=5)
        _randomize(blog, gain=2.0)
        blog.save(folder / f"blog_{projection}.h5")
        sizes[f"blog_{projection}"] = (16, 5)
    models = {}
    for name, (depth, classes) in sizes.items():
        path = next(folder.glob(f"{name}.*"))
        result = export_model(ExportRequest(model=path, output=folder / f"{name}.onnx",
                                            quiet=True, random_samples=1, attention="keep"))
        models[name] = (onnx.load(result.onnx_path), depth, classes)
    return models


def image_feed(model, batch: int = 2) -> dict:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    rng = np.random.default_rng(7)
    return {INPUT_NAME: rng.standard_normal((batch, *dims)).astype(np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_attention_in_the_test_models_is_informative(exported, name):
    model, _, classes = exported[name]
    (core,) = find_attention_cores(model).cores
    softmax = next(n for n in model.graph.node if n.name == core.softmax)
    weights = run(model, image_feed(model), extra_outputs=[softmax.output[0]])[-1]
    top = weights.max(-1)
    assert top.mean() > 1 / classes + 0.02, "uniform attention: parity would prove nothing"
    assert (top > 0.999).mean() < 0.9, "one-hot attention: parity would prove little"


@pytest.mark.slow
@pytest.mark.parametrize("level", OPT_LEVELS)
@pytest.mark.parametrize("form", ["decomposed", "attention"])
@pytest.mark.parametrize("name", MODELS)
def test_rewritten_models_match_the_export(exported, name, form, level):
    model, _, _ = exported[name]
    rewritten, info = apply_attention_form(model, form)
    assert info["form"] == form
    feeds = image_feed(model)
    assert_parity(run(model, feeds, level)[0], run(rewritten, feeds, level)[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_finds_the_attention_core_not_the_spatial_gather(exported, name):
    model, depth, classes = exported[name]
    findings = find_attention_cores(model)
    assert findings.problems == []
    (core,) = findings.cores
    assert sum(op == "Softmax" for op in ops(model)) == 2  # the gather's and the core's
    query, key_t, value = (core.shapes[r] for r in ("query", "key_t", "value"))
    assert query[2] == depth and key_t[1:] == [depth, classes] and value[1:] == [classes, depth]
    assert query[1] > classes  # pixels attend to regions, not regions to pixels
    assert core.scale == pytest.approx(depth ** -0.5)


@pytest.mark.slow
def test_report_of_the_keras3_model(exported):
    model, depth, _ = exported["keras3"]
    rewritten, info = apply_attention_form(model, "decomposed", target="tensorrt")
    json.dumps(info)  # storable as metadata
    (core,) = info["cores"]
    assert core["nodes"]["softmax"].endswith("object_attention_1/Softmax")
    assert core["nodes"]["scale"].endswith("object_attention_1/mul")
    assert core["shapes"]["query"][1:] == [24 * 24, depth]
    assert core["change"]["exact"] is False  # 32**-0.5 is not a power of two
    assert core["change"]["removed_nodes"] == [core["nodes"]["scale"]]
    assert info["reason"].startswith("requested") and info["opset"] == 17
    first = next(n for n in rewritten.graph.node if n.name == core["nodes"]["first_matmul"])
    scale = next(n for n in rewritten.graph.node if first.input[0] in n.output)
    assert scale.op_type == "Mul" and scale.input[0] == core["tensors"]["query"]
    softmax = next(n for n in rewritten.graph.node if n.name == core["nodes"]["softmax"])
    assert softmax.input[0] == first.output[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blog_conv", "blog_dense"])
def test_blog_models_fold_the_scale_into_the_query_conv(exported, name):
    model, _, _ = exported[name]
    rewritten, info = apply_attention_form(model, "decomposed")
    change = info["cores"][0]["change"]
    assert change["exact"] is True and change["scale_moved_to"].startswith("folded into Conv")
    assert ops(rewritten).count("Mul") == ops(model).count("Mul") - 1
    assert ops(rewritten).count("Transpose") == ops(model).count("Transpose")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_attention_op_form(exported, name):
    model, depth, _ = exported[name]
    rewritten, info = apply_attention_form(model, "attention")
    assert info["opset"] == 23 and rewritten.ir_version >= 11
    (node,) = [n for n in rewritten.graph.node if n.op_type == "Attention"]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["q_num_heads"] == attributes["kv_num_heads"] == 1
    assert attributes["scale"] == pytest.approx(depth ** -0.5)
    assert ops(rewritten).count("Softmax") == 1  # only the spatial gather's is left
    assert ops(rewritten).count("MatMul") == ops(model).count("MatMul") - 2


@pytest.mark.slow
def test_keep_and_auto(exported):
    model, _, _ = exported["blog_dense"]
    kept, info = apply_attention_form(model, "keep")
    assert kept.SerializeToString() == model.SerializeToString()
    assert info["form"] == "keep" and len(info["cores"]) == 1 and "change" not in info["cores"][0]
    for backend in BACKENDS:  # auto takes each backend's own choice and says why
        form, reason = backend.graph_target.forms["attention"]
        _, info = apply_attention_form(model, "auto", target=backend.graph_target)
        assert (info["form"], info["reason"], info["requested"]) == (form, reason, "auto")
        assert info["target"] == backend.name


def test_other_softmaxes_are_reported_with_the_reason():
    model = conv_net()  # a final softmax over classes, fed by a Conv
    _, info = apply_attention_form(model, "auto")
    assert info["other_softmaxes"] == [
        "Softmax 'softmax': its input comes from Conv, not from a MatMul of Q and K^T"]
