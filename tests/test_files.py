"""Temporary files and folders: names no artifact glob matches, leftovers of killed runs
cleaned, "the latest file" never a temp, hidden or unreadable one; a place the machine will
not let us write in exit 6 (decided from the error, as root too), a file for a folder exit 2."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ocr_deploy.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, BadInputError, WriteError
from ocr_deploy.files import (
    PAUSE_ENV,
    atomic_output,
    check_writable_output,
    clean_stale_temps,
    latest_file,
    private_tempdir,
    write_bytes_atomic,
)

KILLED_WRITER = """
import sys
from pathlib import Path
from ocr_deploy.files import atomic_output, pause_point, private_tempdir
with atomic_output(Path(sys.argv[1])) as tmp, private_tempdir("ocr-test-calib-") as folder:
    tmp.write_bytes(b"partial")
    (folder / "ranges.json").write_text("{}")
    print(tmp, folder, flush=True)
    pause_point("written")
"""


def _killed_run(output: Path, flag: Path) -> tuple[Path, Path]:
    """A writer killed with -9 in the middle of its atomic write and temp-folder use."""
    run = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(output)],
                           env={**os.environ, PAUSE_ENV: f"written:{flag}"},
                           stdout=subprocess.PIPE, text=True)
    line = run.stdout.readline().split()
    end = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < end:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    flag.unlink()
    return Path(line[0]), Path(line[1])


def test_temp_names_match_no_artifact_glob(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"x")
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.tmp-")
        for pattern in ("*.onnx", "*.engine", "*.json", "*.plan", ".*.onnx", ".*.engine"):
            assert list(tmp_path.glob(pattern)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_leftovers_of_killed_runs_are_cleaned_and_never_picked(tmp_path):
    output = tmp_path / "export" / "model.onnx"
    temp, folder = _killed_run(output, tmp_path / "flag")
    assert temp.exists() and folder.is_dir()  # what kill -9 leaves behind
    assert latest_file(output.parent, "*.onnx") is None  # the partial file is not an export
    (output.parent / "good.onnx").write_bytes(b"model")
    assert latest_file(output.parent, "*.onnx") == output.parent / "good.onnx"
    write_bytes_atomic(output.parent / "other.onnx", b"model")  # a later write cleans up
    assert not temp.exists()
    with private_tempdir("ocr-test-calib-") as fresh:  # and a later temp folder
        assert fresh.is_dir() and fresh != folder
    assert not folder.exists() and not fresh.exists()


def test_live_processes_keep_their_temp_files(tmp_path):
    with atomic_output(tmp_path / "a.onnx") as tmp:
        tmp.write_bytes(b"in progress")
        assert clean_stale_temps(tmp_path) == [] and tmp.exists()


def test_latest_file_skips_hidden_temp_empty_and_unreadable_files(tmp_path):
    def touch(name: str, data: bytes, age: float) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    oldest = touch("old.onnx", b"model", 100)
    touch("older.parity-failed.onnx", b"model", 50)
    touch(".hidden.onnx", b"model", 1)
    touch(".x.onnx.tmp-abcdef-999999-abcd1234", b"part", 1)
    touch("empty.onnx", b"", 1)
    (tmp_path / "broken.onnx").symlink_to(tmp_path / "nowhere.onnx")  # unreadable
    (tmp_path / "folder.onnx").mkdir()
    assert latest_file(tmp_path, "*.onnx", (".parity-failed.onnx",)) == oldest
    newest = touch("new.onnx", b"model", 10)
    assert latest_file(tmp_path, "*.onnx", (".parity-failed.onnx",)) == newest
    assert latest_file(tmp_path, "*.engine") is None


def test_unusable_temp_locations_are_bad_input(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BadInputError, match="no temporary file could be made") as info, \
            atomic_output(blocker / "model.onnx"):
        pass
    assert info.value.exit_code == EXIT_BAD_INPUT
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))
    with pytest.raises(WriteError, match="set TMPDIR to a writable folder") as info, \
            private_tempdir("ocr-test-"):
        pass
    assert info.value.exit_code == EXIT_ENVIRONMENT  # the machine's setting, not the input


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                                  errno.EDQUOT])
def test_the_machine_refusing_a_write_is_exit_6(tmp_path, monkeypatch, code):
    """The errno decides, in the early check and at the write itself: root passes
    os.access on a read-only mount, so no pre-check may decide alone."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match="expected to write the output here") as info:
        check_writable_output(tmp_path / "new" / "model.onnx", force=False)
    assert info.value.exit_code == EXIT_ENVIRONMENT
    with pytest.raises(WriteError) as info, atomic_output(tmp_path / "model.onnx"):
        pass
    assert info.value.exit_code == EXIT_ENVIRONMENT
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's sysfs")
def test_sysfs_is_exit_6_for_root_too():
    with pytest.raises(WriteError, match="'/sys'") as info:
        check_writable_output(Path("/sys/x.onnx"), force=False)
    assert info.value.exit_code == EXIT_ENVIRONMENT
