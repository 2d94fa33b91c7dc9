"""Writing onto a full disk, a read-only filesystem or without permission is the machine's
problem, not a bug: a one-line error naming the path and what to do, exit code 6, and
nothing lost (the previous output stays, no temporary file is left). Simulated with
``ENOSPC``/``EROFS`` raised at the write, and for real on a tiny tmpfs where this machine
lets a test mount one. Hand-built ONNX: no TensorFlow."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx_models import small_segnet, small_segnet_metadata

from ocr_deploy.cli_support import run_command
from ocr_deploy.contract.metadata import write_metadata
from ocr_deploy.errors import EXIT_ENVIRONMENT, WriteError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.pairs import pair_output, read_pair


def _no_space(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_full_disk_while_writing_a_file_loses_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: _no_space(self))
    with pytest.raises(WriteError, match="no space left on its device") as info:
        write_bytes_atomic(target, b"new")
    assert info.value.exit_code == EXIT_ENVIRONMENT and "\n" not in info.value.one_line()
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_full_disk_inside_a_pair_keeps_the_old_pair(tmp_path):
    artifact, companion = tmp_path / "m.onnx", tmp_path / "m.onnx.json"
    with pair_output(artifact, companion) as write:
        write.artifact_tmp.write_bytes(b"first")
        write.companion = {"n": 1}
    with pytest.raises(WriteError, match=r"m\.onnx"), \
            pair_output(artifact, companion, force=True) as write:
        write.artifact_tmp.write_bytes(b"half")
        _no_space(write.artifact_tmp)
    pair = read_pair(artifact, companion, content=True)
    assert pair.content == b"first" and pair.companion["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_commands_report_a_read_only_filesystem_in_one_line(capsys):
    import argparse

    def body(_):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/labels.png")

    assert run_command("ocr-x", body, argparse.ArgumentParser(), []) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "/mnt/ro/labels.png" in err and "read-only" in err
    assert "internal error" not in err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 768 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_build_onto_a_full_disk_exits_6_and_keeps_the_old_artifact(tiny_disk, tmp_path,
                                                                   capsys):
    from ocr_deploy.builder.cli import main

    model = small_segnet()
    write_metadata(model, small_segnet_metadata())
    source = tmp_path / "segnet.onnx"
    onnx.save(model, str(source))
    out = tiny_disk / "segnet_fp16.onnx"
    assert main([str(source), "--fp16", "-o", str(out), "-q"]) == 0
    before = {p.name: p.read_bytes() for p in tiny_disk.iterdir()}
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # fill the disk to the last block
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    assert main([str(source), "--fp16", "-o", str(out), "--force", "-q"]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out) in err and "disk" in err
    filler.unlink()
    assert {p.name: p.read_bytes() for p in tiny_disk.iterdir()} == before
    assert json.loads((tiny_disk / "segnet_fp16.onnx.json").read_text())["precision"] == "fp16"
