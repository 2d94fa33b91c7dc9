"""ocr-build-engine on ONNX Runtime CPU: FP32, FP16, calibrated INT8, cache, budget, search.

Runs on the shipped demo model (a real trained OCRNet) with synthetic calibration and
validation images, so accuracy figures mean something.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ocr_deploy.backends.onnxruntime.options import OnnxRuntimeOptions
from ocr_deploy.builder.cli import main
from ocr_deploy.builder.pipeline import BuildRequest, build
from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.precision.calibrate import CalibrationSettings
from ocr_deploy.sidecar import read_sidecar
from ocr_deploy.verification.accuracy import Budget


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    from ocr_deploy.demo import DEMO_MODEL
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    out = tmp_path_factory.mktemp("demo") / "demo.onnx"
    return export_model(ExportRequest(model=DEMO_MODEL, output=out, argmax=True,
                                      quiet=True)).onnx_path


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples

    folder = tmp_path_factory.mktemp("calib")
    write_samples(folder, 16, seed=TRAIN_SEED + 1)
    return folder


@pytest.fixture(scope="session")
def val_dir(tmp_path_factory):
    from ocr_deploy.demo.synthetic import write_samples

    folder = tmp_path_factory.mktemp("val")
    write_samples(folder, 24)
    return folder


def _request(onnx_path, tmp_path, precision, name=None, **options):
    options.setdefault("calib", CalibrationSettings(method="minmax"))
    options.setdefault("calib_samples", 16)
    return BuildRequest(onnx=onnx_path, precision=precision, backend="onnxruntime",
                        output=tmp_path / (name or f"m_{precision}.onnx"), quiet=True,
                        **options)


def _labels(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["labels"], {INPUT_NAME: images})[0]


@pytest.fixture(scope="session")
def val_inputs(demo_onnx, val_dir):
    from ocr_deploy.precision.calibration_data import load_samples

    data = load_samples(val_dir, read_metadata(demo_onnx))
    return np.concatenate([inputs for inputs, _ in data.batches(8)])


def test_fp32_build_writes_artifact_and_sidecar(demo_onnx, tmp_path, val_inputs):
    result = build(_request(demo_onnx, tmp_path, "fp32"))
    sidecar = read_sidecar(result.artifact)
    assert sidecar["backend"] == "onnxruntime" and sidecar["precision"] == "fp32"
    assert len(sidecar["source_onnx_sha256"]) == 64
    assert sidecar["metadata"]["num_classes"] == 5
    assert read_metadata(result.artifact).precision == "fp32"
    np.testing.assert_array_equal(_labels(result.artifact, val_inputs),
                                  _labels(demo_onnx, val_inputs))


def test_fp16_is_mixed_precision_and_within_budget(demo_onnx, tmp_path, val_dir):
    result = build(_request(demo_onnx, tmp_path, "fp16", val_dir=val_dir,
                            backend_options={"onnxruntime": OnnxRuntimeOptions("basic")}))
    model = onnx.load(str(result.artifact))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert any(n.op_type == "Cast" for n in model.graph.node)
    accuracy = result.info["verification"]["accuracy"]
    assert accuracy["miou_drop"] <= 0.1 and accuracy["agreement"] > 0.99


def test_int8_onnxruntime_placement_coverage_and_cache_reuse(demo_onnx, tmp_path, calib_dir,
                                                             val_dir, val_inputs, capsys):
    first = build(_request(demo_onnx, tmp_path, "int8", "a.onnx", calib_dir=calib_dir,
                           val_dir=val_dir))
    assert first.info["calibration"]["cache_hit"] is False
    assert first.info["calibration"]["providers"][-1] == "CPUExecutionProvider"
    assert first.info["calibration"]["forward_passes_per_sample"] == 1  # minmax: one pass
    placement = first.info["placement"]
    assert placement["name"].startswith("onnxruntime-")
    assert read_metadata(first.artifact).build["placement"] == placement
    ops = {n.op_type for n in onnx.load(str(first.artifact)).graph.node}
    assert {"QLinearConv", "QLinearAdd", "QLinearConcat"} <= ops  # integer kernels, saved
    kept = first.info["kept_in_higher_precision"]
    assert len(kept["attention"]) == 3 and "classifier" not in kept  # ORT: classifier int8
    assert placement["kept_by_default"] == ["attention"]
    coverage = first.info["int8_coverage"]
    assert coverage["integer_mac_share"] >= 0.9 and coverage["judged_from"].startswith("the opt")
    not_integer = {layer["name"]: layer["reason"] for layer in coverage["not_integer"]}
    assert all(name in not_integer and "attention" in not_integer[name]
               for name in kept["attention"] if name in not_integer)
    assert set(not_integer) <= set(kept["attention"])
    assert first.info["verification"]["met_budget"]
    assert (_labels(first.artifact, val_inputs) == _labels(demo_onnx, val_inputs)).mean() > 0.98
    assert read_sidecar(first.artifact)["int8_coverage"] == coverage

    second = build(_request(demo_onnx, tmp_path, "int8", "b.onnx", calib_dir=calib_dir,
                            val_dir=val_dir))
    assert second.info["calibration"]["cache_hit"] is True
    assert second.info["calibration"]["cache_file"] == first.info["calibration"]["cache_file"]
    forced = build(_request(demo_onnx, tmp_path, "int8", "c.onnx", calib_dir=calib_dir,
                            val_dir=val_dir, recalibrate=True))
    assert forced.info["calibration"]["cache_hit"] is False


def test_entropy_is_real_entropy(demo_onnx, tmp_path, calib_dir):
    from ocr_deploy.precision.calibrate import calibrate
    from ocr_deploy.precision.calibration_data import load_samples

    data = load_samples(calib_dir, read_metadata(demo_onnx), 8)
    model = demo_onnx.read_bytes()
    ranges = calibrate(model, data, CalibrationSettings(method="entropy"), tmp_path,
                       quiet=True).ranges
    clipped = [name for name, r in ranges.items()
               if r.threshold < 0.95 * max(abs(r.minimum), abs(r.maximum))]
    assert len(clipped) > len(ranges) // 4  # entropy clips outliers; MinMax cannot


@pytest.mark.slow
def test_sensitivity_search_meets_a_tight_budget(demo_onnx, tmp_path, calib_dir, val_dir):
    plain = build(_request(demo_onnx, tmp_path, "int8", "plain.onnx", calib_dir=calib_dir,
                           val_dir=val_dir, quantize_attention=True))
    agreement = plain.info["verification"]["accuracy"]["agreement"]
    target = agreement + (1 - agreement) / 2  # halfway between INT8 and FP32
    result = build(_request(demo_onnx, tmp_path, "int8", "tight.onnx", calib_dir=calib_dir,
                            val_dir=val_dir, quantize_attention=True,
                            budget=Budget(max_miou_drop=1.0, min_agreement=target)))
    kept = result.info["kept_in_higher_precision"]["sensitivity_search"]
    assert kept and result.info["verification"]["accuracy"]["agreement"] >= target
    assert read_metadata(result.artifact).build["kept_in_higher_precision"][
        "sensitivity_search"] == kept


def test_budget_miss_without_search_fails_cleanly(demo_onnx, tmp_path, calib_dir, val_dir,
                                                  capsys):
    code = main([str(demo_onnx), "--int8", "--backend", "onnxruntime", "-o",
                 str(tmp_path / "x.onnx"), "--calib-dir", str(calib_dir), "--calib-samples", "16",
                 "--calib-method",
                 "minmax", "--val-dir", str(val_dir), "--min-agreement", "1.0",
                 "--max-miou-drop", "0", "--no-sensitivity-search", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "budget" in err
    assert not list(tmp_path.glob("x.onnx*"))


def test_cli_json_and_latest_export(demo_onnx, tmp_path, monkeypatch, capsys):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "demo.onnx").write_bytes(demo_onnx.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["--fp32", "--backend", "onnxruntime", "--json"]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["artifact"] == "engines/demo_fp32.onnx" and info["backend"] == "onnxruntime"
    assert info["source_onnx"] == "export/demo.onnx"
    assert "export/demo.onnx" in captured.err and (tmp_path / "engines/demo_fp32.onnx").is_file()


def test_npy_calibration_data(demo_onnx, tmp_path):
    from ocr_deploy.demo.synthetic import make_dataset
    from ocr_deploy.precision.calibration_data import load_samples

    images, _ = make_dataset(4, seed=3)
    np.save(tmp_path / "a.npy", images)  # uint8 images
    meta = read_metadata(demo_onnx)
    floats = (images[:2].astype(np.float32) - 127.5) / 127.5
    np.savez(tmp_path / "b.npz", x=floats)  # already preprocessed
    data = load_samples(tmp_path, meta)
    assert len(data) == 6 and data.sources[0] == "a.npy[0]"
    inputs = np.concatenate([batch for batch, _ in data.batches(4)])
    np.testing.assert_allclose(inputs[4], floats[0], atol=1e-6)
    np.testing.assert_allclose(inputs[0], floats[0], atol=1e-6)


def _fails(capsys, *args) -> str:
    assert main([str(a) for a in args] + ["-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "".join(lines)
    assert all(line.startswith("warning: ") for line in lines[:-1])  # skipped files
    assert lines[-1].startswith("ocr-build-engine: error: ")
    return lines[-1]


def test_bad_inputs(demo_onnx, tmp_path, calib_dir, capsys):
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(demo_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    assert "ocr-export" in _fails(capsys, plain, "--fp32", "-o", tmp_path / "o.onnx")
    assert "--calib-dir" in _fails(capsys, demo_onnx, "--int8", "--backend", "onnxruntime",
                                   "-o", tmp_path / "o.onnx")
    bad = tmp_path / "bad_calib"
    bad.mkdir()
    for source in sorted(calib_dir.glob("*.png"))[:4]:
        (bad / source.name).write_bytes(source.read_bytes())
    (bad / "zz_broken.png").write_bytes(b"not a png")
    args = [demo_onnx, "--int8", "--backend", "onnxruntime", "-o", tmp_path / "o.onnx",
            "--calib-dir", bad, "--calib-method", "minmax", "--no-verify"]
    assert "zz_broken.png" in _fails(capsys, *args, "--calib-samples", "5")
    assert "NoSuchExecutionProvider" in _fails(capsys, *args, "--calib-providers",
                                               "NoSuchExecutionProvider")
    assert "at least 5" in _fails(capsys, *args, "--calib-samples", "5", "--skip-unreadable")
    assert main([str(a) for a in args] + ["--calib-samples", "4", "--skip-unreadable", "-q"]) == 0
    assert "--force" in _fails(capsys, *args, "--calib-samples", "4")
    assert "TensorRT" in _fails(capsys, demo_onnx, "--fp16", "--backend", "tensorrt")
    assert "not writable" in _fails(capsys, demo_onnx, "--fp32", "--backend", "onnxruntime",
                                    "-o", plain / "x.onnx")


def test_conflicting_precisions_are_a_usage_error(demo_onnx, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(demo_onnx), "--fp16", "--int8"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_flags_are_validated_at_parse_time(demo_onnx, tmp_path, capsys):
    for flags in (["--max-miou-drop", "-1"], ["--min-agreement", "nan"],
                  ["--min-agreement", "5"], ["--percentile", "250"],
                  ["--calib-samples", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(demo_onnx), "--int8", *flags])
        assert exit_info.value.code == 2, flags
        assert "expected" in capsys.readouterr().err


def test_outputs_and_node_names_are_checked(demo_onnx, tmp_path, capsys):
    base = [demo_onnx, "--fp32", "--backend", "onnxruntime"]
    assert ".onnx" in _fails(capsys, *base, "-o", tmp_path / "x.engine")
    (tmp_path / "folder").mkdir()
    assert "a folder" in _fails(capsys, *base, "-o", tmp_path / "folder")
    assert "NoSuchNode" in _fails(capsys, demo_onnx, "--fp16", "--backend", "onnxruntime",
                                  "-o", tmp_path / "k.onnx", "--keep-fp32", "NoSuchNode")
    assert not list(tmp_path.glob("*.onnx*"))


def test_flags_that_do_not_apply_are_warned_about(demo_onnx, tmp_path, calib_dir, capsys):
    assert main([str(demo_onnx), "--fp32", "--backend", "onnxruntime", "-o",
                 str(tmp_path / "w.onnx"), "--calib-dir", str(calib_dir), "--dla-core", "0",
                 "--recalibrate", "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: --recalibrate does nothing" in err and "warning: --dla-core" in err
    assert "--calib-dir does nothing" not in err  # the calibration images verify FP32
    assert main([str(demo_onnx), "--fp16", "--backend", "onnxruntime", "-o",
                 str(tmp_path / "v.onnx"), "--calib-dir", str(calib_dir), "--no-verify",
                 "-q"]) == 0
    assert "warning: --calib-dir does nothing" in capsys.readouterr().err


def test_low_integer_coverage_is_warned_about(demo_onnx, tmp_path, calib_dir, capsys):
    convs = [n.name for n in onnx.load(str(demo_onnx)).graph.node if n.op_type == "Conv"]
    result = build(_request(demo_onnx, tmp_path, "int8", "low.onnx", calib_dir=calib_dir,
                            verify=False, keep_fp32=convs[:-4]))
    assert result.info["int8_coverage"]["integer_mac_share"] < 0.9
    assert "integer kernels (under 90%)" in capsys.readouterr().err


def test_ignore_index_in_masks(demo_onnx, tmp_path, calib_dir, val_dir):
    from PIL import Image

    masked = tmp_path / "val255"
    (masked / "labels").mkdir(parents=True)
    for image in sorted(val_dir.glob("*.png"))[:8]:
        (masked / image.name).write_bytes(image.read_bytes())
        mask = np.array(Image.open(val_dir / "labels" / image.name))
        mask[:8] = 255  # Cityscapes-style "void" rows
        Image.fromarray(mask).save(masked / "labels" / image.name)
    result = build(_request(demo_onnx, tmp_path, "fp16", "ign.onnx", val_dir=masked))
    verification = result.info["verification"]
    assert verification["ignore_index"] == 255 and verification["met_budget"]
    assert verification["accuracy"]["miou"] > 50
    with pytest.raises(BadInputError, match="ignore"):
        build(_request(demo_onnx, tmp_path, "fp16", "ign2.onnx", val_dir=masked,
                       ignore_index=None))


def test_foreign_graph_or_bad_metadata_is_refused(demo_onnx, tmp_path, capsys):
    from onnx import TensorProto, helper

    from ocr_deploy.contract.metadata import PREFIX

    demo = onnx.load(str(demo_onnx))
    copied = [(p.key, p.value) for p in demo.metadata_props if p.key.startswith(PREFIX)]
    graph = helper.make_graph(
        [helper.make_node("Add", [INPUT_NAME, INPUT_NAME], ["logits"])], "foreign",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["b", 96, 96, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 96, 96, 3])])
    foreign = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=9)
    helper.set_model_props(foreign, dict(copied))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    assert "not the graph its metadata describes" in _fails(
        capsys, tmp_path / "foreign.onnx", "--fp32", "--backend", "onnxruntime", "-o",
        tmp_path / "f32.onnx")
    helper.set_model_props(demo, {**dict(copied), PREFIX + "num_classes": '"seven"'})
    onnx.save(demo, str(tmp_path / "seven.onnx"))
    assert "num_classes" in _fails(capsys, tmp_path / "seven.onnx", "--fp32", "--backend",
                                   "onnxruntime", "-o", tmp_path / "s32.onnx")
    assert not list(tmp_path.glob("?32.onnx*"))


def test_latest_export_skips_hidden_and_temporary_files(demo_onnx, tmp_path, monkeypatch):
    import os
    import time

    from ocr_deploy.builder.pipeline import latest_export

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "good.onnx").write_bytes(demo_onnx.read_bytes())
    later = time.time() + 60
    for name in (".good.onnx.tmp-abc123-99-x", ".partial.onnx", "empty.onnx"):
        (folder / name).write_bytes(b"" if name == "empty.onnx" else b"partial")
        os.utime(folder / name, (later, later))
    assert latest_export(folder) == folder / "good.onnx"


def test_two_builds_racing_to_one_output(demo_onnx, tmp_path):
    import subprocess
    import sys

    from ocr_deploy.sidecar import read_sidecar_pair

    out = tmp_path / "race.onnx"
    command = [sys.executable, "-m", "ocr_deploy.builder.cli", str(demo_onnx), "--backend",
               "onnxruntime", "-o", str(out), "--no-verify", "-q"]
    runs = [subprocess.Popen([*command, precision], stderr=subprocess.PIPE, text=True)
            for precision in ("--fp32", "--fp16")]
    codes = sorted(run.wait() for run in runs)
    errors = [run.stderr.read() for run in runs]
    assert codes == [0, 2], errors
    assert any("race.onnx" in e and "expected" in e for e in errors), errors
    pair = read_sidecar_pair(out)  # whichever won, artifact and sidecar belong together
    assert pair.companion["precision"] in ("fp32", "fp16") and pair.artifact == out


@pytest.mark.parametrize("point", ["pair-shadowed", "pair-committed"])
def test_build_killed_between_artifact_and_sidecar(demo_onnx, tmp_path, point):
    import os
    import signal
    import subprocess
    import sys
    import time

    from ocr_deploy.files import PAUSE_ENV
    from ocr_deploy.sidecar import read_sidecar_pair

    out = tmp_path / "m.onnx"
    assert main([str(demo_onnx), "--fp32", "--backend", "onnxruntime", "-o", str(out),
                 "-q"]) == 0
    flag = tmp_path / "paused"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocr_deploy.builder.cli", str(demo_onnx), "--fp16",
         "--no-verify", "--backend", "onnxruntime", "-o", str(out), "--force", "-q"],
        env={**os.environ, PAUSE_ENV: f"{point}:{flag}"})
    deadline = time.time() + 120
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert flag.exists(), "the build never reached its pause point"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pair = read_sidecar_pair(out)  # the old pair, or the new one through its shadow
    expected = "fp32" if point == "pair-shadowed" else "fp16"
    assert pair.companion["precision"] == expected
    assert read_metadata(pair.artifact).precision == expected
