"""End-to-end graphs (``ocr_deploy.graph.end_to_end``): uint8 images in, labels at the
image size out, computing what ``Segmenter.predict`` computes on the plain artifact; on
small hand-built cores (``e2e_models``), plus one real export."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from e2e_models import SIZE, save, segnet
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from ocr_deploy.contract.metadata import read_metadata
from ocr_deploy.contract.signature import check_onnx
from ocr_deploy.errors import BadInputError, MetadataError
from ocr_deploy.graph.emit import Emitter
from ocr_deploy.graph.end_to_end import (
    INPUT,
    LABELS,
    SCORES,
    ImageSizes,
    make_end_to_end,
    record_parity,
)
from ocr_deploy.graph.image_resize import resize_image
from ocr_deploy.runtime import Segmenter
from ocr_deploy.verification.comparison import top2_gap
from ocr_deploy.verification.end_to_end_parity import end_to_end_parity, parity_sizes, sample_images

DOWN, ODD_UP = (7, 9), (25, 41)  # around the cores' 12x16 input
RANGE = ImageSizes((5, 6), (40, 50))


def _parity(tmp_path, core, sizes: ImageSizes, images=None, name="e2e", **options):
    """(report, e2e metadata) of the end-to-end graph of ``core`` against the plain one."""
    wrapped, meta = make_end_to_end(core, sizes, **options)
    plain_path, e2e_path = save(core, tmp_path, f"{name}_plain"), save(wrapped, tmp_path, name)
    images = images or sample_images(parity_sizes(meta), per_size=2, seed=3,
                                     channels=meta.input_channels)
    with Segmenter.open(e2e_path) as e2e, Segmenter.open(plain_path) as plain:
        return end_to_end_parity(e2e, plain, images), meta


def _exact(report: dict) -> bool:
    return report["agreement"] == 1.0 and report["tie_pixels"] == 0


def _ties_only(report: dict) -> bool:
    """Every disagreement is a tie (the boundary form is the runtime's arithmetic when the
    runtime blends boundary pixels only; it blends every pixel of busy maps)."""
    return report["agreement_excl_ties"] == 1.0 and report["agreement"] > 0.995


def _resize_model(size, out, dynamic: bool, target: str) -> ort.InferenceSession:
    graph = helper.make_graph([], "resize", [helper.make_tensor_value_info(
        INPUT, TensorProto.UINT8, [1, "h" if dynamic else size[0], "w" if dynamic else size[1],
                                   3])], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    emit = Emitter(model, "t/")
    if dynamic:
        shape = emit.op("Shape", [INPUT])
        size = tuple(emit.op("Gather", [shape, emit.const(a, np.int64)], axis=0) for a in (1, 2))
    onnxruntime = target == "onnxruntime"
    planar = resize_image(emit, INPUT, size, out, (700, 700), [0, 1, 2],
                          np.float64 if onnxruntime else np.float32, uint8_layout=onnxruntime)
    planar = emit.op("Cast", [planar], to=TensorProto.INT32)  # uint8 or int32 values
    emit.commit()
    model.graph.output.append(helper.make_tensor_value_info(planar, TensorProto.INT32,
                                                            [None] * 4))
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("size, out", [((37, 55), (12, 16)), ((12, 16), (12, 16)),
                                       ((5, 7), (12, 16)), ((100, 333), (12, 16)),
                                       ((12, 333), (12, 16)), ((480, 640), (96, 96))])
def test_resize_is_pillows_bit_for_bit(size, out):
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), np.uint8)
    image[: size[0] // 2, : size[1] // 2] = 255  # saturated: the passes need no clipping
    expected = np.asarray(Image.fromarray(image).resize(out[::-1], Image.BILINEAR))
    expected = expected.transpose(2, 0, 1).astype(np.int32)
    for dynamic in (False, True):
        got = _resize_model(size, out, dynamic, "onnxruntime").run(None, {INPUT: image[None]})
        assert np.array_equal(got[0][0], expected), f"dynamic={dynamic}"
    # TensorRT's tables: float32 when computed (no float64 there); run here on ONNX Runtime
    fixed = _resize_model(size, out, False, "tensorrt").run(None, {INPUT: image[None]})[0][0]
    assert np.array_equal(fixed, expected)
    computed = _resize_model(size, out, True, "tensorrt").run(None, {INPUT: image[None]})[0][0]
    assert np.abs(computed - expected).max() <= 1 and (computed != expected).mean() < 0.01


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
@pytest.mark.parametrize("labels_form, argmax_form", [("boundary", "argmax"),
                                                      ("dense", "argmax"),
                                                      ("dense", "compare")])
def test_fixed_sizes_match_segmenter_predict(tmp_path, layout, color_order, labels_form,
                                             argmax_form):
    core = segnet(layout, labels="also")
    for size in (DOWN, SIZE, ODD_UP):
        report, meta = _parity(tmp_path, core, ImageSizes.fixed(*size), name=f"e2e_{size[0]}",
                               color_order=color_order, labels_form=labels_form,
                               argmax_form=argmax_form)
        assert report["sizes"] == [list(size)] and report["images"] == 2
        assert _ties_only(report), (size, report)
        if size == SIZE:  # nothing to resize: the argmax of the same scores
            assert _exact(report), (size, report)
        assert meta.end_to_end["image_size"] == list(size)
        assert meta.end_to_end["color_order"] == color_order


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
@pytest.mark.parametrize("labels_form", ["boundary", "dense"])
def test_dynamic_sizes_match_segmenter_predict(tmp_path, target, labels_form):
    """Tables computed from the image shape; the TensorRT graph (float32 tables, int32
    resize, comparison argmax) runs here on ONNX Runtime: its arithmetic, not TensorRT."""
    report, meta = _parity(tmp_path, segnet("NHWC"), RANGE, target=target,
                           labels_form=labels_form)
    assert meta.end_to_end["image_range"] == {"min": [5, 6], "opt": [40, 50], "max": [40, 50]}
    sizes = report["sizes"]
    assert len(sizes) == 4 and [5, 6] in sizes and [40, 50] in sizes and list(SIZE) in sizes
    assert any(h % 2 and w % 2 and h not in (5, 40) for h, w in sizes)  # odd, in between
    if target == "onnxruntime":
        assert _ties_only(report), report
    else:  # a float32 coefficient may move a pixel by one grey level
        assert report["agreement_excl_ties"] > 0.999
        assert meta.end_to_end["forms"]["argmax"] == "compare"


def test_batches_of_mixed_sizes_run_by_size(tmp_path):
    wrapped, _ = make_end_to_end(segnet(), RANGE)
    images = sample_images([(9, 11), (30, 7), (9, 11)], per_size=1, seed=2)
    with Segmenter.open(save(wrapped, tmp_path, "e2e")) as e2e, \
            Segmenter.open(save(segnet(), tmp_path, "plain")) as plain:
        labels = e2e.predict(images)
        assert [m.shape for m in labels] == [(9, 11), (30, 7), (9, 11)]
        for image, ours, theirs in zip(images, labels, plain.predict(images), strict=True):
            assert ours.dtype == np.uint8 and np.array_equal(ours, e2e.predict(image))
            assert (ours == theirs).mean() > 0.99
        batch = e2e.prepare(images[:1] * 3)
        assert batch.shape == (3, 9, 11, 3) and batch.dtype == np.uint8
        assert np.array_equal(e2e.run(batch, [LABELS])[LABELS][2], labels[0])
    with Segmenter.open(save(wrapped, tmp_path, "e2e"), max_batch=1) as one:
        assert all(np.array_equal(a, b) for a, b in zip(one.predict(images), labels,
                                                        strict=True))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_labels_only_model_is_resized_nearest(tmp_path, layout):
    core = segnet(layout, labels="only")
    for sizes in (ImageSizes.fixed(*ODD_UP), ImageSizes.fixed(*DOWN), RANGE):
        report, meta = _parity(tmp_path, core, sizes)
        assert meta.end_to_end["forms"]["labels"] == "nearest" and _exact(report)
    with pytest.raises(BadInputError, match="labels-only"):
        make_end_to_end(core, RANGE, scores=True)


def test_more_than_256_classes(tmp_path):
    """uint16 labels (int32 for TensorRT, which has no 16-bit integers), through the
    runtime's ONNX Runtime backend."""
    core = segnet("NHWC", classes=300)
    bias = next(t for t in core.graph.initializer if t.name == "b3")
    raised = numpy_helper.to_array(bias).copy()
    raised[256:] += 1.5  # classes past 255 win at many pixels
    bias.CopyFrom(numpy_helper.from_array(raised, "b3"))
    report, meta = _parity(tmp_path, core, ImageSizes.fixed(*ODD_UP), target="tensorrt")
    assert meta.end_to_end["label_dtype"] == "int32" and _ties_only(report)
    wrapped, meta = make_end_to_end(core, RANGE)
    assert meta.end_to_end["label_dtype"] == "uint16"
    with Segmenter.open(save(core, tmp_path, "plain")) as plain, \
            Segmenter.open(save(wrapped, tmp_path, "e2e_uint16")) as e2e:
        assert e2e.output_dtype(LABELS) == np.uint16
        for image in sample_images([DOWN, ODD_UP], seed=4):
            labels = e2e.predict(image)
            scores = plain.predict_scores(image)
            same = labels == plain.predict(image)
            assert labels.dtype == np.uint16 and labels.max() > 255
            assert same[top2_gap(scores) > 2e-3 * np.abs(scores).max()].all()


def test_strided_output_and_scores(tmp_path):
    core = segnet("NCHW", stride=2)  # logits at 6x8 for the 12x16 input
    report, meta = _parity(tmp_path, core, ImageSizes.fixed(*ODD_UP), scores=True)
    assert meta.end_to_end["scores"] == SCORES and meta.end_to_end["forms"]["labels"] == "dense"
    assert report["agreement_excl_ties"] == 1.0
    assert report["max_abs_score_diff"] < 1e-4
    report, _ = _parity(tmp_path, core, RANGE, labels_form="boundary")
    assert _ties_only(report)


def test_greyscale_model(tmp_path):
    report, meta = _parity(tmp_path, segnet("NHWC", channels=1), RANGE, color_order="BGR")
    assert meta.input_channels == 1 and _ties_only(report)


def test_normalisation_folds_only_where_exact(tmp_path):
    padded = _parity(tmp_path, segnet("NHWC"), ImageSizes.fixed(*ODD_UP), color_order="BGR")
    unpadded = _parity(tmp_path, segnet("NHWC", pad_first=False), ImageSizes.fixed(*ODD_UP),
                       color_order="BGR")
    shared = _parity(tmp_path, segnet("NHWC", shared_input=True), ImageSizes.fixed(*ODD_UP),
                     color_order="BGR")
    folds = [meta.end_to_end["normalization"] for _, meta in (padded, unpadded, shared)]
    assert folds[0]["folded"] == ["scale"] and folds[0]["explicit"] == ["mean"]
    assert "pads" in folds[0]["not_folded_because"]["mean"]
    assert folds[1]["folded"] == ["scale", "mean"] and not folds[1]["explicit"]
    assert folds[2]["conv"] is None and folds[2]["explicit"] == ["mean", "scale"]
    for report, _ in (padded, unpadded, shared):
        assert _ties_only(report), report


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from ocr_deploy.precision.calibrate import CalibrationSettings, calibrate
    from ocr_deploy.precision.calibration_data import load_samples

    folder = tmp_path_factory.mktemp("calib")
    core = segnet("NCHW", labels="also")
    for i, image in enumerate(sample_images([SIZE], per_size=8, seed=9)):
        Image.fromarray(image).save(folder / f"{i}.png")
    data = load_samples(folder, read_metadata(core))
    return core, calibrate(core.SerializeToString(), data, CalibrationSettings("minmax"),
                           folder / "cache", quiet=True)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_cores(tmp_path, calibrated, precision):
    """The core is kept as it is: the end-to-end labels equal predict() on the same FP16
    (Cast) or INT8 (Q/DQ) artifact, whose first convolution cannot take the folding."""
    from ocr_deploy.backends.onnxruntime.placement import placement as onnxruntime_placement
    from ocr_deploy.precision.fp16 import convert_fp16
    from ocr_deploy.precision.qdq import quantize_int8

    core, ranges = calibrated
    if precision == "fp16":
        reduced = convert_fp16(onnx.ModelProto.FromString(core.SerializeToString()))
    else:
        reduced = quantize_int8(core, ranges, onnxruntime_placement(), [])
        assert any(n.op_type == "QuantizeLinear" for n in reduced.graph.node)
    for sizes in (ImageSizes.fixed(*ODD_UP), RANGE):
        report, meta = _parity(tmp_path, reduced, sizes)
        assert meta.end_to_end["normalization"]["conv"] is None  # cast or quantised first
        assert _ties_only(report), report


def test_metadata_records_the_contract_and_parity(tmp_path):
    wrapped, meta = make_end_to_end(segnet(), RANGE)
    report = {"agreement": 1.0, "sizes": [[5, 6]]}
    meta = record_parity(wrapped, meta, report)
    path = save(wrapped, tmp_path, "e2e")
    assert check_onnx(path).end_to_end["parity"] == report
    assert read_metadata(path).image_sizes() == ((5, 6), (40, 50))
    assert [i.name for i in wrapped.graph.input] == [INPUT]
    assert [o.name for o in wrapped.graph.output] == [LABELS]
    plain = segnet()
    assert not any(p.key == "ocr_deploy.end_to_end" for p in plain.metadata_props)


def _with_contract(tmp_path, change: dict):
    """A dynamic end-to-end graph whose ``end_to_end`` metadata has ``change`` applied."""
    wrapped, meta = make_end_to_end(segnet(), RANGE)
    for prop in wrapped.metadata_props:
        if prop.key == "ocr_deploy.end_to_end":
            prop.value = json.dumps({**meta.end_to_end, **change})
    return save(wrapped, tmp_path, "edited")


@pytest.mark.parametrize("change, key", [
    ({"label_dtype": "uint4"}, "end_to_end"),
    ({"image_range": {"min": [50, 6], "max": [40, 50]}}, "end_to_end"),
    ({"image_size": [12, 16]}, "end_to_end"),  # both a size and a range
    ({"color_order": "rgb"}, "end_to_end"),
])
def test_tampered_contract_is_a_metadata_error(tmp_path, change, key):
    path = _with_contract(tmp_path, change)
    with pytest.raises(MetadataError, match=rf"ocr_deploy\.{key} as "):
        Segmenter.open(path)


@pytest.mark.parametrize("change, match", [
    ({"label_dtype": "uint16"}, r"output 'labels' as uint16 labels \[batch, H, W\]"),
    ({"image_range": None, "image_size": [40, 50]}, r"uint8 \[batch, 40, 50, 3\]"),
    ({"scores": "scores"}, r"the end-to-end outputs \['labels', 'scores'\]"),
])
def test_graph_that_does_not_fit_its_contract_is_refused(tmp_path, change, match):
    path = _with_contract(tmp_path, change)
    with pytest.raises(MetadataError, match=match):
        Segmenter.open(path)
    with pytest.raises(MetadataError, match=match):
        check_onnx(path)


def test_bad_images_get_one_line_errors(tmp_path):
    fixed, _ = make_end_to_end(segnet(), ImageSizes.fixed(*ODD_UP))
    dynamic, _ = make_end_to_end(segnet(), RANGE)
    image = sample_images([ODD_UP], per_size=1)[0]
    with Segmenter.open(save(fixed, tmp_path, "fixed")) as e2e:
        cases = [(image.astype(np.float32), "dtype uint8"),
                 (image[..., :2], r"shaped \[H,W,3\]"),
                 (image[:20], r"images of 25x41 .* found an image of 20x41"),
                 ([image, image[:, :40]], r"found an image of 25x40 \(image 1\)")]
        for bad, match in cases:
            with pytest.raises(BadInputError, match=match) as info:
                e2e.predict(bad)
            assert "\n" not in str(info.value)
        with pytest.raises(BadInputError, match="with a scores output, found labels only"):
            e2e.predict_scores(image)
        with pytest.raises(BadInputError, match=r"a batch shaped \[1, 25, 41, 3\] of uint8"):
            e2e.run(image[None, :20])
    with Segmenter.open(save(dynamic, tmp_path, "dynamic")) as e2e:
        with pytest.raises(BadInputError, match=r"images of 5x6 to 40x50 .* an image of 4x20"):
            e2e.predict(image[:4, :20])
        with pytest.raises(BadInputError, match=r"images of 5x6 to 40x50 .* 41x41"):
            e2e.run(np.zeros((1, 41, 41, 3), np.uint8))
        with pytest.raises(BadInputError, match="images of one size in a batch"):
            e2e.prepare([image[:10], image[:11]])


@pytest.mark.parametrize("options, match", [
    ({"sizes": ImageSizes.fixed(0, 16)}, "sides 1..65536"),
    ({"sizes": ImageSizes((10, 10), (9, 20))}, "min <= opt <= max"),
    ({"color_order": "BRG"}, "colour order among RGB, BGR"),
    ({"labels_form": "sparse"}, "labels form among auto, dense, boundary"),
    ({"argmax_form": "topk"}, "argmax form among auto, argmax, compare"),
    ({"target": "tflite"}, "a backend among tensorrt, onnxruntime"),
    ({"scores": True, "labels_form": "boundary"}, "'dense' or 'auto' with a scores output"),
])
def test_bad_build_options_are_refused(options, match):
    options = {"sizes": RANGE, **options}
    with pytest.raises(BadInputError, match=match):
        make_end_to_end(segnet(), **options)


def test_end_to_end_model_is_not_wrapped_twice():
    wrapped, _ = make_end_to_end(segnet(), RANGE)
    with pytest.raises(BadInputError, match="a plain exported model, found an end-to-end one"):
        make_end_to_end(wrapped, RANGE)


@pytest.mark.slow
def test_real_export(tmp_path, exported_nhwc_onnx):
    """The small Keras 3 model as exported (normalisation from its card, logits + labels)."""
    core = onnx.load(str(exported_nhwc_onnx))
    for sizes in (ImageSizes.fixed(97, 131), ImageSizes((33, 40), (150, 161))):
        report, meta = _parity(tmp_path, core, sizes)
        assert report["agreement_excl_ties"] == 1.0 and report["agreement"] > 0.999, report
        assert meta.end_to_end["normalization"]["folded"]  # the first Conv takes the scale


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_range_with_one_side_fixed_opens_and_matches(tmp_path, target):
    """A range whose height is fixed (``--image-range 20x6:20x50``) declares that side
    static: ``Segmenter.open`` accepts it, and its labels are ``predict``'s."""
    sizes = ImageSizes((20, 6), (20, 50))
    report, _ = _parity(tmp_path, segnet("NHWC"), sizes, target=target)
    image = onnx.load(str(tmp_path / "e2e.onnx")).graph.input[0]
    dims = [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim]
    assert dims[1:] == [20, "width", 3]
    assert {tuple(size) for size in report["sizes"]} >= {(20, 6), (20, 50)}
    assert report["agreement_excl_ties"] > (0.999 if target == "tensorrt" else 0.9999)
