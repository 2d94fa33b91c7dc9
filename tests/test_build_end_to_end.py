"""``ocr-build-engine --end-to-end`` and its consumers, on small hand-built cores
(``e2e_models``; TensorFlow plays no part): the build (fixed sizes and ranges, NHWC/NCHW,
RGB/BGR, FP16/INT8), its verdict and parity figure, a failed verdict leaving nothing, and
the artifact in ocr-predict, ocr-bench, run_device, Triton and DeepStream packaging."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from e2e_models import SIZE, save, segnet
from google.protobuf import text_format
from PIL import Image

from ocr_deploy.builder.cli import main as build_main
from ocr_deploy.builder.end_to_end import EndToEndRequest
from ocr_deploy.builder.pipeline import BuildRequest, build
from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.errors import BadInputError, BudgetError
from ocr_deploy.packaging.cli import main as package_main
from ocr_deploy.precision.calibrate import CalibrationSettings
from ocr_deploy.runtime import Segmenter
from ocr_deploy.serving.python_model import INPUT_PIXELS, OUTPUT_LABELS
from ocr_deploy.sidecar import read_sidecar, sidecar_path
from ocr_deploy.verification.accuracy import Budget
from ocr_deploy.verification.end_to_end_parity import sample_images

RANGE = ImageSizes((6, 8), (40, 56), (24, 32))
CAMERA = (30, 44)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    """Camera-size images (some outside RANGE: the verdict resizes those) with masks."""
    folder = tmp_path_factory.mktemp("camera")
    (folder / "labels").mkdir()
    for i, image in enumerate(sample_images([CAMERA, (20, 28), (64, 80)], per_size=4,
                                            seed=11)):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
        mask = (image[..., 0] // 64).astype(np.uint8)  # classes 0..3 by the red channel
        Image.fromarray(mask).save(folder / "labels" / f"{i:02d}.png")
    return folder


def _build(tmp_path, core, e2e: EndToEndRequest | None, precision="fp32", name="e2e", **kw):
    source = save(core, tmp_path, "core")
    kw.setdefault("calib", CalibrationSettings(method="minmax"))
    return build(BuildRequest(onnx=source, precision=precision, backend="onnxruntime",
                              output=tmp_path / f"{name}.onnx", quiet=True, end_to_end=e2e,
                              **kw))


@pytest.mark.parametrize("layout, color_order, sizes", [
    ("NHWC", "RGB", ImageSizes.fixed(*CAMERA)), ("NCHW", "BGR", RANGE)])
def test_end_to_end_build_verdict_and_parity(tmp_path, images_dir, layout, color_order,
                                             sizes):
    result = _build(tmp_path, segnet(layout), EndToEndRequest(sizes, color_order),
                    val_dir=images_dir)
    meta = read_metadata(result.artifact)
    e2e = meta.end_to_end
    assert e2e["color_order"] == color_order and e2e["target"] == "onnxruntime"
    assert meta.image_sizes() == (sizes.minimum, sizes.maximum)
    if not sizes.is_fixed:
        assert e2e["image_range"]["opt"] == [24, 32]
    verification = result.info["verification"]
    assert verification["met_budget"] and verification["samples"] == 12
    assert "at their own size where the artifact takes it" in verification["data"]
    accuracy = verification["accuracy"]
    assert accuracy["agreement"] == 1.0 and accuracy["miou"] == accuracy["miou_fp32"]
    assert accuracy["runner"]["role"] == "the built end-to-end artifact in its own runner"
    parity = result.info["end_to_end_parity"]
    assert parity["agreement_excl_ties"] == 1.0 and parity["images"] >= 2
    assert e2e["parity"] == parity  # the artifact's own metadata holds the figure
    sidecar = read_sidecar(result.artifact)
    assert sidecar["end_to_end_parity"] == parity
    assert sidecar["metadata"]["end_to_end"]["parity"] == parity
    image = sample_images([CAMERA], per_size=1, seed=5)[0]
    with Segmenter.open(result.artifact) as built, \
            Segmenter.open(save(segnet(layout), tmp_path, "plain")) as plain:
        given = image[..., ::-1].copy() if color_order == "BGR" else image
        assert np.array_equal(built.predict(given), plain.predict(image))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_end_to_end(tmp_path, images_dir, precision):
    """Precision applies to the core; INT8 is calibrated on the camera images resized by
    the runtime; the parity figure is against the plain core of the same precision."""
    result = _build(tmp_path, segnet("NHWC"), EndToEndRequest(RANGE), precision,
                    calib_dir=images_dir, calib_samples=12)
    assert result.artifact.name == "e2e.onnx" and read_metadata(result.artifact).precision \
        == precision
    model = onnx.load(str(result.artifact))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    if precision == "int8":
        assert any(n.op_type == "QLinearConv" for n in model.graph.node)
        assert result.info["int8_coverage"]["integer_mac_share"] > 0
    else:
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert result.info["verification"]["met_budget"]
    assert "calibration images" not in result.info["verification"]["data"]
    parity = result.info["end_to_end_parity"]
    assert parity["agreement_excl_ties"] == 1.0
    assert f"plain {precision} core" in parity["reference"]


def test_failed_verdict_leaves_nothing(tmp_path, images_dir):
    """Calibration ranges clipped to nothing: the INT8 end-to-end artifact misses the
    budget, and neither it nor a sidecar is written."""
    with pytest.raises(BudgetError):
        _build(tmp_path, segnet("NHWC"), EndToEndRequest(ImageSizes.fixed(*CAMERA)), "int8",
               calib_dir=images_dir, calib_samples=12, val_dir=images_dir,
               calib=CalibrationSettings(method="percentile", percentile=1e-9),
               budget=Budget(min_agreement=0.999), sensitivity_search=False)
    assert not (tmp_path / "e2e.onnx").exists()
    assert not sidecar_path(tmp_path / "e2e.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".e2e")]


def test_synthetic_verdict_and_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = save(segnet("NHWC"), tmp_path, "core")
    result = build(BuildRequest(onnx=source, precision="fp32", backend="onnxruntime",
                                quiet=True, end_to_end=EndToEndRequest(RANGE)))
    assert result.artifact == tmp_path.joinpath("engines", "core_fp32_e2e.onnx").relative_to(
        tmp_path)
    data = result.info["verification"]["data"]
    assert data.startswith("16 seeded synthetic images of 6x8, 12x16, ") and \
        "no image data given" in data


def test_cli_end_to_end_flags(tmp_path, capsys):
    source = save(segnet("NCHW"), tmp_path, "core")
    out = tmp_path / "cli.onnx"
    assert build_main([str(source), "--fp32", "--backend", "onnxruntime", "-o", str(out),
                       "--end-to-end", "--image-range", "6x8:24x32:40x56", "--bgr",
                       "--e2e-labels", "dense", "--e2e-argmax", "compare", "--json",
                       "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    e2e = info["metadata"]["end_to_end"]
    assert e2e["image_range"] == {"min": [6, 8], "opt": [24, 32], "max": [40, 56]}
    assert e2e["color_order"] == "BGR"
    assert (e2e["forms"]["labels"], e2e["forms"]["argmax"]) == ("dense", "compare")
    bad = [(["--image-size", "30x40"], "expected --image-size with --end-to-end, found "
            "--image-size without it"),
           (["--bgr"], "expected --bgr with --end-to-end"),
           (["--end-to-end"], "expected --image-size HxW or --image-range MIN:MAX with "
            "--end-to-end, found neither"),
           (["--end-to-end", "--image-size", "30x40", "--image-range", "6x8:40x56"],
            "not allowed with argument"),
           (["--end-to-end", "--image-range", "40x56:6x8"], "each side growing"),
           (["--end-to-end", "--image-range", "6x8"], "expected MINxMIN:MAXxMAX"),
           (["--end-to-end", "--image-size", "30x40", "--scores", "--e2e-labels",
             "boundary"], "labels form 'dense' or 'auto' with a scores output")]
    for flags, message in bad:
        assert _exit_code(build_main, [str(source), "--fp32", "--backend", "onnxruntime",
                                       "-o", str(tmp_path / "x.onnx"), *flags]) == 2, flags
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def _exit_code(main, argv) -> int:
    """A command's exit code, argparse's usage errors (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def bgr_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bgr")
    core = segnet("NHWC", classes=5)
    result = _build(folder, core, EndToEndRequest(ImageSizes.fixed(*CAMERA), "BGR"))
    return result.artifact, save(core, folder, "plain")


def test_predict_cli_gives_a_bgr_artifact_its_pixels(tmp_path, bgr_artifact):
    from ocr_deploy.runtime.predict_cli import main as predict_main

    artifact, plain = bgr_artifact
    image = sample_images([CAMERA], per_size=1, seed=8)[0]
    Image.fromarray(image).save(tmp_path / "frame.png")
    Image.fromarray(image[:20]).save(tmp_path / "small.png")
    for model, out in ((artifact, "e2e"), (plain, "plain")):
        assert predict_main([str(model), str(tmp_path / "frame.png"), "-o",
                             str(tmp_path / out), "-q"]) == 0
    labels = [np.asarray(Image.open(tmp_path / out / "frame.labels.png"))
              for out in ("e2e", "plain")]
    assert np.array_equal(*labels) and np.unique(labels[0]).size > 1
    assert predict_main([str(artifact), str(tmp_path / "small.png"), "-o",
                         str(tmp_path / "bad"), "-q"]) == 2


def test_predict_cli_refuses_wrong_sizes_in_one_line(tmp_path, bgr_artifact, capsys):
    from ocr_deploy.runtime.predict_cli import main as predict_main

    Image.fromarray(np.zeros((20, 44, 3), np.uint8)).save(tmp_path / "small.png")
    assert predict_main([str(bgr_artifact[0]), str(tmp_path / "small.png"), "-o",
                         str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ocr-predict: error: ") and "expected images of 30x44 (what " \
        "this end-to-end artifact was built for), found an image of 20x44" in err[-1]


def test_bench_times_the_artifact_itself_at_its_size(bgr_artifact):
    from ocr_deploy.bench import benchmark
    from ocr_deploy.bench.report import format_table

    artifact, plain = bgr_artifact
    report = benchmark([artifact, plain], [1, 2], warmup=1, iterations=2,
                       image_sizes=[None, CAMERA])
    e2e, base = report["results"]
    assert e2e["end_to_end_artifact"] and not base["end_to_end_artifact"]
    assert e2e["image_size"] == base["image_size"] == list(CAMERA)
    assert e2e["outputs"] == ["labels"] and base["outputs"] == ["logits"]
    assert all("end_to_end" in b and "compute" in b for b in e2e["batches"])
    table = format_table(report)
    assert f"{artifact.name} (e2e)" in table and "30x44" in table
    assert "compute and end-to-end are the same call" in table
    with pytest.raises(BadInputError, match="images of 30x44"):
        benchmark([artifact], [1], warmup=0, iterations=1, image_size=(20, 20))


def test_run_device_on_a_range_takes_the_image_size(tmp_path):
    from ocr_deploy.graph.end_to_end import make_end_to_end

    wrapped, _ = make_end_to_end(segnet("NHWC"), RANGE)
    image = sample_images([(20, 30)], per_size=1, seed=2)[0]
    with Segmenter.open(save(wrapped, tmp_path, "range")) as e2e:
        labels = np.zeros((1, 20, 30), np.uint8)
        e2e.run_device(image[None].copy(), {"labels": labels})
        assert np.array_equal(labels[0], e2e.predict(image))
        with pytest.raises(BadInputError, match="image_size=\\(H, W\\) with raw addresses"):
            e2e.run_device((image.ctypes.data, image.nbytes), {"labels": labels}, batch=1)
        with pytest.raises(BadInputError, match="images of 6x8 to 40x56"):
            e2e.run_device(np.zeros((1, 50, 30, 3), np.uint8), {"labels": labels})


# -- packaging -----------------------------------------------------------------------------

def _model_config():
    """Triton's model-config protobuf (the Triton tests skip where tritonclient is missing,
    as in the TensorFlow-free leg)."""
    return pytest.importorskip("tritonclient.grpc.model_config_pb2",
                               reason="tritonclient is not installed (the serve extra)")


def _parse(path):
    return text_format.Parse(path.read_text(), _model_config().ModelConfig())


def _types(tensors):
    return {t.name: (_model_config().DataType.Name(t.data_type), list(t.dims))
            for t in tensors}


def test_triton_config_of_an_end_to_end_onnx(tmp_path, bgr_artifact):
    from ocr_deploy.graph.end_to_end import make_end_to_end
    from ocr_deploy.packaging.artifact_info import read_artifact
    from ocr_deploy.packaging.triton_repo import write_triton_repository

    write_triton_repository(read_artifact(bgr_artifact[0]), tmp_path / "repo")
    config = _parse(tmp_path / "repo" / "e2e" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx"
    assert _types(config.input) == {INPUT_NAME: ("TYPE_UINT8", [*CAMERA, 3])}
    assert _types(config.output) == {"labels": ("TYPE_UINT8", list(CAMERA))}
    assert config.output[0].label_filename == "labels.txt"
    python = _parse(tmp_path / "repo" / "e2e_python" / "config.pbtxt")
    assert _types(python.output) == {OUTPUT_LABELS: ("TYPE_UINT8", [-1, -1])}
    assert [list(i.dims) for i in python.input if i.name == INPUT_PIXELS] == [[*CAMERA, 3]]
    # a range, more than 256 classes: dims -1, UINT16 labels
    many = save(make_end_to_end(segnet("NHWC", classes=300), RANGE)[0], tmp_path, "many")
    write_triton_repository(read_artifact(many), tmp_path / "repo")
    config = _parse(tmp_path / "repo" / "many" / "config.pbtxt")
    assert _types(config.input) == {INPUT_NAME: ("TYPE_UINT8", [-1, -1, 3])}
    assert _types(config.output) == {"labels": ("TYPE_UINT16", [-1, -1])}
    python = _parse(tmp_path / "repo" / "many_python" / "config.pbtxt")
    assert _types(python.output) == {OUTPUT_LABELS: ("TYPE_UINT16", [-1, -1])}


def test_a_plain_artifact_and_its_end_to_end_one_share_a_repository(tmp_path, bgr_artifact,
                                                                       capsys):
    """docs/serving.md's sequence: the plain build, then its end-to-end build (named as
    ocr-build-engine names it, NAME_e2e) into one repository; no model name clashes, and
    the README's client example names a model ocr-serve serves (a Python-backend one)."""
    artifact, plain = bgr_artifact
    repo = tmp_path / "repo"
    assert package_main([str(plain), "--triton", str(repo), "--name", "seg", "-q"]) == 0
    assert package_main([str(artifact), "--triton", str(repo), "--name", "seg_e2e", "-q"]) == 0
    assert sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) == [
        "seg", "seg_e2e", "seg_e2e_python", "seg_python"]
    assert _parse(repo / "seg_e2e" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert _parse(repo / "seg_python" / "config.pbtxt").backend == "python"
    assert 'client.infer("seg_e2e_python"' in (repo / "README.md").read_text()
    assert package_main([str(plain), "--triton", str(repo), "--name", "x_python"]) == 2
    assert "kept for the Python-backend models" in capsys.readouterr().err


def _engine(tmp_path, name, meta, capability, sha="a" * 64, precision="int8"):
    """A placeholder engine (ocr-package reads only its sidecar) built 'on' a GPU."""
    engine = tmp_path / f"{name}.engine"
    engine.write_bytes(f"placeholder engine for compute capability {capability}".encode())
    from sidecars import write_sidecar

    low, opt, high = meta.image_profile()
    write_sidecar(engine, {
        "backend": "tensorrt", "precision": precision, "compute_capability": capability,
        "source_onnx_sha256": sha,
        "profiles": [{"input": INPUT_NAME, "min": [1, *low, 3], "opt": [1, *opt, 3],
                      "max": [8, *high, 3]}], "metadata": meta.__dict__})
    return engine


def test_triton_engines_for_several_gpus_in_one_model(tmp_path):
    from ocr_deploy.graph.end_to_end import make_end_to_end
    from ocr_deploy.packaging.artifact_info import read_artifact
    from ocr_deploy.packaging.cli import main as package_main

    _, meta = make_end_to_end(segnet("NHWC"), RANGE, target="tensorrt")
    engines = [_engine(tmp_path, f"seg_{cc}", meta, cc) for cc in ("8.9", "9.0", "8.7")]
    repo = tmp_path / "repo"
    assert package_main([str(engines[0]), "--triton", str(repo), "--name", "seg",
                         "--other-gpu-engines", str(engines[1]), str(engines[2]), "-q"]) == 0
    config = _parse(repo / "seg" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert dict(config.cc_model_filenames) == {"8.9": "model.plan", "9.0": "model_9.0.plan",
                                               "8.7": "model_8.7.plan"}
    for cc, engine in zip(("8.9", "9.0", "8.7"), engines, strict=True):
        assert (repo / "seg" / "1" / config.cc_model_filenames[cc]).read_bytes() == \
            engine.read_bytes()
    assert _types(config.input) == {INPUT_NAME: ("TYPE_UINT8", [-1, -1, 3])}
    assert _types(config.output) == {"labels": ("TYPE_UINT8", [-1, -1])}
    assert config.max_batch_size == 8
    from ocr_deploy.packaging.triton_repo import TritonOptions, write_triton_repository

    info = read_artifact(engines[0])
    refused = [([_engine(tmp_path, "twin", meta, "8.9")], "a second engine for 8.9"),
               ([_engine(tmp_path, "other", meta, "7.5", sha="b" * 64)],
                "another source export"),
               ([_engine(tmp_path, "fp16", meta, "7.5", precision="fp16")],
                "another precision"),
               ([_onnx_copy(tmp_path)], "a onnxruntime artifact without one")]
    for others, message in refused:
        with pytest.raises(BadInputError, match=message):
            write_triton_repository(info, tmp_path / "refused", TritonOptions(
                gpu_engines=others, force=True))


def _onnx_copy(tmp_path):
    path = tmp_path / "plain_copy.onnx"
    onnx.save(segnet("NHWC"), str(path))
    return path


def test_python_backend_model_runs_the_artifact_and_checks_sizes(bgr_artifact):
    from ocr_deploy.errors import RequestError
    from ocr_deploy.serving.python_model import ImagesToLabels as EndToEnd

    artifact, plain = bgr_artifact
    import io

    image = sample_images([CAMERA], per_size=1, seed=4)[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")  # encoded: RGB, decoded to the artifact's
    with Segmenter.open(artifact) as e2e, Segmenter.open(plain) as reference:
        expected = reference.predict(image)
        answers = EndToEnd(e2e).answer([
            (image[None, ..., ::-1].copy(), None),
            (np.zeros((1, 20, 44, 3), np.uint8), None),
            (None, np.array([[buffer.getvalue()]], dtype=object))])
    assert np.array_equal(answers[0][0], expected)
    assert isinstance(answers[1], RequestError) and "images of 30x44" in str(answers[1])
    assert np.array_equal(answers[2][0], expected)


def test_deepstream_refuses_an_end_to_end_artifact(tmp_path, bgr_artifact, capsys):
    from ocr_deploy.packaging.cli import main as package_main

    assert package_main([str(bgr_artifact[0]), "--deepstream", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "expected a plain artifact for DeepStream" in err and "does its own argmax" in err
    assert "found an end-to-end artifact (uint8 images in, labels out)" in err
    assert not (tmp_path / "ds").exists()


def test_tensorrt_engine_facts_for_an_end_to_end_graph():
    """What the TensorRT backend derives without TensorRT: the optimisation profile of the
    uint8 image input and the engine's tensors from its sidecar (the engine is not built
    here: see tests/test_tensorrt_build.py -m gpu)."""
    from ocr_deploy.backends import get
    from ocr_deploy.backends.tensorrt.build import profile_shapes
    from ocr_deploy.graph.end_to_end import make_end_to_end

    _, meta = make_end_to_end(segnet("NCHW", classes=300), RANGE, scores=True,
                              target="tensorrt")
    assert profile_shapes(meta, (1, 2, 4)) == (INPUT_NAME, [(1, 6, 8, 3), (2, 24, 32, 3),
                                                         (4, 40, 56, 3)])
    _, fixed = make_end_to_end(segnet("NCHW"), ImageSizes.fixed(*CAMERA), target="tensorrt")
    assert profile_shapes(fixed, (1, 1, 8))[1] == [(1, *CAMERA, 3), (1, *CAMERA, 3),
                                                    (8, *CAMERA, 3)]
    assert profile_shapes(read_metadata(segnet("NCHW")), (1, 1, 8))[1][0] == (1, 3, *SIZE)
    sidecar = {"profiles": [{"input": INPUT_NAME, "min": [1, 6, 8, 3], "opt": [2, 24, 32, 3],
                             "max": [4, 40, 56, 3]}], "metadata": meta.__dict__}
    tensors = get("tensorrt").tensors(None, meta, sidecar)
    assert [(t.name, t.dtype, t.shape) for t in tensors.inputs] == [
        (INPUT_NAME, "uint8", [-1, -1, -1, 3])]
    assert [(t.name, t.dtype, t.shape) for t in tensors.outputs] == [
        ("labels", "int32", [-1, -1, -1]), ("scores", "float32", [-1, -1, -1, 300])]
    assert tensors.profile_batches == (1, 2, 4)


def test_copied_artifact_keeps_its_pair(tmp_path, bgr_artifact):
    """The parity figure written into the built ONNX after its verdict is covered by the
    sidecar's hash: the pair opens, a copy without its sidecar opens as a plain ONNX."""
    artifact, _ = bgr_artifact
    with Segmenter.open(artifact) as seg:
        assert seg.metadata.end_to_end["parity"]["images"] >= 1
    shutil.copyfile(artifact, tmp_path / "copy.onnx")
    with Segmenter.open(tmp_path / "copy.onnx") as seg:
        assert seg.metadata.end_to_end["parity"] == read_metadata(artifact).end_to_end["parity"]


def test_int8_search_runs_on_the_core_and_the_rebuild_is_judged_end_to_end(tmp_path,
                                                                          images_dir):
    """A budget the first INT8 verdict misses: the sensitivity search keeps layers (on the
    core, ONNX Runtime CPU proxy) and the rebuilt artifact is judged end to end again."""
    result = _build(tmp_path, segnet("NHWC"), EndToEndRequest(ImageSizes.fixed(*CAMERA)),
                    "int8", calib_dir=images_dir, calib_samples=12, val_dir=images_dir,
                    budget=Budget(min_agreement=0.999))
    verification = result.info["verification"]
    search = verification["sensitivity_search"]
    kept = search["kept_in_higher_precision"]
    assert search["first_verdict"]["agreement"] < 0.999 and kept
    assert search["first_verdict"]["runner"]["role"].startswith("the built end-to-end")
    assert verification["met_budget"] and verification["accuracy"]["agreement"] >= 0.999
    assert result.info["kept_in_higher_precision"]["sensitivity_search"] == kept
    assert read_metadata(result.artifact).end_to_end["parity"] == \
        result.info["end_to_end_parity"]
