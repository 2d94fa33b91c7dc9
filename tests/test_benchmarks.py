"""Benchmarks that run: every script in benchmarks/ (a file with a ``__main__`` block) has
``--smoke`` (tiny sizes, one round) and runs with it to exit 0 (marker `benchmarks`:
`bash run.sh test` runs these in a leg of their own). Scripts added later are found too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py")
                 if 'if __name__ == "__main__"' in p.read_text())
SMOKE_TIMEOUT = 600  # seconds per script


def _run(script: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_scripts_are_found():
    assert {"compare_backends.py", "runtime_overhead.py", "gpu_check.py"} <= \
        {p.name for p in SCRIPTS}


@pytest.mark.benchmarks
@pytest.mark.slow
@pytest.mark.tensorflow  # most export a model first
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_runs_with_smoke(script):
    shown = _run(script, "--help", timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "--smoke" in shown.stdout, \
        f"benchmarks/{script.name} has no --smoke (tiny sizes, one round): add it " \
        "(benchmarks/harness.py add_smoke/shrink)"
    done = _run(script, "--smoke", timeout=SMOKE_TIMEOUT)
    assert done.returncode == 0, \
        f"python benchmarks/{script.name} --smoke: exit {done.returncode}\n" \
        f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
