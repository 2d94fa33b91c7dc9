"""Artifact + JSON companion pairs: bound by SHA-256, consistent through kill -9 at every
write point and through concurrent writers (real processes), refused when mismatched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from sidecars import write_sidecar

from ocr_deploy.errors import BadInputError, OutputExistsError, PairMismatchError
from ocr_deploy.files import PAUSE_ENV
from ocr_deploy.pairs import HASH_KEY, Pair, read_pair, shadow_path, write_pair
from ocr_deploy.sidecar import read_sidecar, sidecar_path

POINTS = {"pair-written": "old", "pair-shadowed": "old", "pair-committed": "new",
          "pair-published": "new"}
WRITER = """
import sys
from pathlib import Path
from ocr_deploy.errors import OcrDeployError
from ocr_deploy.pairs import write_pair
artifact, tag, force, count = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
try:
    for i in range(count):
        name = f"{tag}{i}" if count > 1 else tag
        write_pair(artifact, name.encode() * 5000, Path(str(artifact) + ".json"),
                   {"tag": name}, force)
except OcrDeployError as exc:
    print(exc.one_line(), file=sys.stderr)
    sys.exit(exc.exit_code)
"""
READER = """
import sys, time
from pathlib import Path
from ocr_deploy.pairs import read_pair
artifact, seconds, seen = Path(sys.argv[1]), float(sys.argv[2]), set()
end = time.monotonic() + seconds
while time.monotonic() < end:
    pair = read_pair(artifact, Path(str(artifact) + ".json"), content=True)
    tag = pair.companion["tag"]
    assert pair.content == tag.encode() * 5000, (tag, pair.artifact)
    seen.add(tag)
print(len(seen))
"""


def _content(tag: str) -> bytes:
    return tag.encode() * 5000


def _check(artifact: Path) -> str:
    """Read the pair as a reader does; assert it belongs together; return its tag."""
    pair = read_pair(artifact, Path(str(artifact) + ".json"))
    tag = pair.companion["tag"]
    assert pair.artifact.read_bytes() == _content(tag)
    return tag


def _writer(artifact: Path, tag: str, force: bool, pause: str | None = None,
            flag: Path | None = None, count: int = 1) -> subprocess.Popen:
    env = dict(os.environ)
    if pause:
        env[PAUSE_ENV] = f"{pause}:{flag}"
    return subprocess.Popen([sys.executable, "-c", WRITER, str(artifact), tag,
                             "1" if force else "0", str(count)], env=env,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(flag: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not flag.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < end, "the writer never reached its pause point"
        time.sleep(0.01)


def _leftovers(folder: Path, artifact: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in (artifact.name, artifact.name + ".json"))


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_at_each_write_point_leaves_the_old_or_the_new_pair(tmp_path, point):
    artifact, flag = tmp_path / "model.engine", tmp_path.parent / f"{tmp_path.name}.flag"
    write_pair(artifact, _content("old"), Path(str(artifact) + ".json"), {"tag": "old"})
    writer = _writer(artifact, "new", True, point, flag)
    try:
        _wait_for(flag, writer)
        assert _check(artifact) == POINTS[point]  # while the writer is stopped there
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        flag.unlink(missing_ok=True)
    assert _check(artifact) == POINTS[point]  # after the kill
    write_pair(artifact, _content("third"), Path(str(artifact) + ".json"), {"tag": "third"},
               force=True)
    assert _check(artifact) == "third"
    assert _leftovers(tmp_path, artifact) == []  # shadows and dead temp files cleaned


def test_kill_after_the_commit_point_of_a_first_write(tmp_path):
    artifact, flag = tmp_path / "model.onnx", tmp_path.parent / f"{tmp_path.name}.flag"
    writer = _writer(artifact, "new", False, "pair-committed", flag)
    try:
        _wait_for(flag, writer)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        flag.unlink()
    assert not artifact.exists() and _check(artifact) == "new"  # from the shadow
    with pytest.raises(OutputExistsError):  # the pair exists: the next writer completes it
        write_pair(artifact, b"x", Path(str(artifact) + ".json"), {"tag": "x"})
    assert artifact.read_bytes() == _content("new") and _leftovers(tmp_path, artifact) == []


def test_write_without_force_fails_when_another_run_created_the_pair_meanwhile(tmp_path):
    artifact, flag = tmp_path / "model.onnx", tmp_path.parent / f"{tmp_path.name}.flag"
    slow = _writer(artifact, "slow", False, "pair-written", flag)
    _wait_for(flag, slow)  # it checked nothing existed and did its work; now another run:
    fast = _writer(artifact, "fast", False)
    assert fast.wait(60) == 0, fast.stderr.read()
    flag.unlink()  # let the slow run commit
    assert slow.wait(60) == 2
    assert "another run" in slow.stderr.read()
    assert _check(artifact) == "fast" and _leftovers(tmp_path, artifact) == []


def test_two_writers_without_force_one_wins(tmp_path):
    artifact = tmp_path / "model.onnx"
    runs = [_writer(artifact, tag, False) for tag in ("a", "b")]
    codes = sorted(run.wait(60) for run in runs)
    assert codes == [0, 2]
    assert _check(artifact) in ("a", "b") and _leftovers(tmp_path, artifact) == []


@pytest.mark.slow
def test_racing_writers_with_force_never_show_a_mismatched_pair(tmp_path):
    artifact = tmp_path / "model.engine"
    write_pair(artifact, _content("start"), Path(str(artifact) + ".json"), {"tag": "start"})
    reader = subprocess.Popen([sys.executable, "-c", READER, str(artifact), "6"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers = [_writer(artifact, tag, True, count=40) for tag in ("a", "b")]
    assert [w.wait(120) for w in writers] == [0, 0]
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err  # no mismatch, no missing file, ever
    assert int(out) >= 2  # it saw several pairs go by
    assert _check(artifact) in ("a39", "b39") and _leftovers(tmp_path, artifact) == []


def test_read_pair_refuses_a_mismatch_and_an_unbound_companion(tmp_path):
    artifact, companion = tmp_path / "model.engine", tmp_path / "model.engine.json"
    write_pair(artifact, _content("a"), companion, {"tag": "a"})
    assert json.loads(companion.read_text())[HASH_KEY] == read_pair(artifact, companion).sha256
    artifact.write_bytes(_content("b"))  # replaced by hand: the sidecar is for another engine
    with pytest.raises(PairMismatchError, match=r"model\.engine: expected the artifact whose "
                       r"SHA-256 model\.engine\.json records") as info:
        read_pair(artifact, companion)
    assert info.value.exit_code == 2
    companion.write_text(json.dumps({"tag": "b"}))  # a sidecar of an older version
    with pytest.raises(PairMismatchError, match="records its SHA-256 under 'artifact_sha256'"):
        read_pair(artifact, companion)
    companion.unlink()
    with pytest.raises(BadInputError, match=r"its companion model\.engine\.json beside it"):
        read_pair(artifact, companion)
    assert not shadow_path(artifact, "0" * 64).exists()


def test_write_sidecar_binds_an_existing_artifact(tmp_path):
    artifact = tmp_path / "x.onnx"
    artifact.write_bytes(b"model")
    write_sidecar(artifact, {"precision": "fp16"})
    assert read_sidecar(artifact)["precision"] == "fp16"
    artifact.write_bytes(b"other model")
    with pytest.raises(PairMismatchError):
        read_sidecar(artifact)


def test_runtime_refuses_a_built_onnx_beside_another_builds_sidecar(tmp_path, nhwc_onnx,
                                                                    nchw_onnx):
    from ocr_deploy.runtime import Segmenter

    artifact = tmp_path / "built.onnx"
    artifact.write_bytes(nhwc_onnx.read_bytes())
    write_sidecar(artifact, {"provider_options": {}})
    with Segmenter.open(artifact) as seg:
        assert seg.metadata.input_layout == "NHWC"
    artifact.write_bytes(nchw_onnx.read_bytes())
    with pytest.raises(PairMismatchError, match=r"built\.onnx: expected the artifact whose "
                       r"SHA-256 built\.onnx\.json records"):
        Segmenter.open(artifact)
    assert sidecar_path(artifact).exists()


def _export(args: list[str], pause: str | None = None, flag: Path | None = None
            ) -> subprocess.Popen:
    env = dict(os.environ, **({PAUSE_ENV: f"{pause}:{flag}"} if pause else {}))
    return subprocess.Popen([sys.executable, "-c", "from ocr_deploy.export.cli import main; "
                             "raise SystemExit(main())", *args, "-q", "--parity-samples", "2"],
                            env=env, stderr=subprocess.PIPE, text=True)


def _export_pair(onnx_path: Path) -> tuple[Pair, onnx.ModelProto]:
    pair = read_pair(onnx_path, onnx_path.with_name(onnx_path.stem + ".parity.json"))
    assert pair.companion["onnx"] == str(onnx_path)
    return pair, onnx.load(str(pair.artifact))


@pytest.mark.slow
def test_ocr_export_writes_the_onnx_and_its_report_as_one_pair(tmp_path, keras3_h5):
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    out, flag = tmp_path / "m.onnx", tmp_path.parent / f"{tmp_path.name}.flag"
    export_model(ExportRequest(model=keras3_h5, output=out, quiet=True, random_samples=2))
    run = _export([str(keras3_h5), "-o", str(out), "--force", "--argmax"], "pair-committed",
                  flag)
    try:
        _wait_for(flag, run, timeout=300)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
        flag.unlink(missing_ok=True)
    _, model = _export_pair(out)  # the new pair, committed before the kill
    assert sorted(o.name for o in model.graph.output) == ["labels", "logits"]
    out.unlink()
    out.with_name("m.parity.json").unlink()
    slow = _export([str(keras3_h5), "-o", str(out)], "pair-written", flag)
    _wait_for(flag, slow, timeout=300)  # past its early check; another run takes the name:
    fast = _export([str(keras3_h5), "-o", str(out)])
    assert fast.wait(300) == 0, fast.stderr.read()
    flag.unlink()
    assert slow.wait(300) == 2
    assert "another run" in slow.stderr.read()
    _, model = _export_pair(out)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.parity.json"]
