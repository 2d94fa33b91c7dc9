"""examples/c_embed: a C program embeds CPython and runs a model on buffers it owns."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from ocr_deploy.runtime import Segmenter

SOURCE = Path(__file__).resolve().parents[1] / "examples" / "c_embed" / "segment.c"


def _build_command(output: Path) -> list[str]:
    libdir = sysconfig.get_config_var("LIBDIR")
    return ["gcc", "-O2", "-Wall", "-Werror", str(SOURCE), f"-I{sysconfig.get_paths()['include']}",
            f"-L{libdir}", f"-lpython{sysconfig.get_config_var('LDVERSION')}",
            f"-Wl,-rpath,{libdir}", "-o", str(output)]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the C example")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("this Python has no shared libpython to embed (built without "
                    "--enable-shared)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        pytest.skip("Python.h is missing (install the Python development headers)")
    output = tmp_path_factory.mktemp("c_embed") / "segment"
    build = subprocess.run(_build_command(output), capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return output


@pytest.mark.parametrize("variant", ["nhwc_onnx", "nchw_onnx"])
def test_c_program_matches_python(program, variant, request, tmp_path):
    model = request.getfixturevalue(variant)
    raw = tmp_path / "labels.raw"
    run = subprocess.run([str(program), sys.executable, str(model), str(raw)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "segmented a 64x64 image" in run.stdout
    y, x, c = np.mgrid[0:64, 0:64, 0:3]
    image = ((x * 7 + y * 13 + c * 50) % 256).astype(np.uint8)  # the formula in segment.c
    with Segmenter.open(model) as seg:
        expected = seg.run(seg.prepare([image]), [seg.labels_output])[seg.labels_output][0]
    assert np.array_equal(np.fromfile(raw, np.int32).reshape(64, 64), expected)


def test_c_program_reports_errors_in_one_line(program, tmp_path):
    run = subprocess.run([str(program), sys.executable, str(tmp_path / "none.onnx"),
                          str(tmp_path / "x.raw")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == (f"segment: Segmenter.open failed: {tmp_path / 'none.onnx'}: "
                                  "expected an existing file, found no such file; check the path")
