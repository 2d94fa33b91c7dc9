"""The serving environment: a runtime-only virtualenv that Triton's Python backend runs in.

It holds numpy < 2 (the backend stub of nvidia-pytriton 0.7.0 fails every response with
numpy 2), ONNX Runtime, Pillow, this package without TensorFlow, and the nvidia-pytriton
wheel for its ``tritonserver`` binary, Python backend and one backend stub per Python
version. The stub matching the environment's Python is copied into the Python backend's
folder, where the backend looks for it. Versions are pinned in ``constraints-serve.txt``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import BadInputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = PROJECT_ROOT / "constraints-serve.txt"
DEFAULT_ENV = PROJECT_ROOT / ".venv-serve"
STAMP = ".ocr-deploy-serve-installed"
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class ServingEnv:
    """Paths inside a ready serving environment."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def tritonserver_dir(self) -> Path:
        """``site-packages/pytriton/tritonserver`` of this environment."""
        found = sorted(self.root.glob("lib/python3*/site-packages/pytriton/tritonserver"))
        if not found:
            raise BadInputError(self.root, "a serving environment with nvidia-pytriton",
                                "none installed", "delete the folder and rerun ocr-serve")
        return found[0]

    @property
    def tritonserver(self) -> Path:
        return self.tritonserver_dir / "bin" / "tritonserver"

    @property
    def backend_dir(self) -> Path:
        return self.tritonserver_dir / "backends"

    def library_path(self) -> dict[str, str]:
        """``LD_LIBRARY_PATH`` putting this Python's own ``libpython`` first, so the stub
        embeds the interpreter the environment was made with."""
        libdir = subprocess.run([str(self.python), "-c", "import sysconfig; "
                                 "print(sysconfig.get_config_var('LIBDIR') or '')"],
                                capture_output=True, text=True, check=True).stdout.strip()
        paths = [p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p]
        return {"LD_LIBRARY_PATH": os.pathsep.join(paths)} if paths else {}


def _fingerprint() -> str:
    """The pins and the package's base dependencies: what the environment was made from
    (the package itself is installed editable, so code changes need no reinstall)."""
    project = (PROJECT_ROOT / "pyproject.toml").read_text()
    found = re.search(r"^dependencies = \[.*?^\]", project, re.S | re.M)
    data = CONSTRAINTS.read_text() + (found.group(0) if found else project)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def ensure_env(root: Path | None = None, log=print) -> ServingEnv:
    """Return the serving environment at ``root`` (default ``.venv-serve`` in the project),
    creating or updating it first when its installed versions are out of date."""
    env = ServingEnv(Path(root) if root else DEFAULT_ENV)
    if not CONSTRAINTS.is_file():
        if env.python.is_file():
            return _with_stub(env)
        raise BadInputError(env.root, "a serving environment, made from a source checkout",
                            "none, and no constraints-serve.txt beside this package",
                            "run ocr-serve from a checkout of ocr-deploy, or pass --env")
    stamp = env.root / STAMP
    want = _fingerprint()
    env.root.parent.mkdir(parents=True, exist_ok=True)
    with open(env.root.with_name(env.root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent callers wait for one installation
        if stamp.is_file() and stamp.read_text().strip() == want and env.python.is_file():
            return _with_stub(env)
        log(f"ocr-serve: making the serving environment {env.root} (about 20 s, once) ...")
        if not env.python.is_file():
            _run([sys.executable, "-m", "venv", str(env.root)])
        pip = [str(env.python), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS)]
        _run([*pip, "--no-deps", "nvidia-pytriton"])  # only its binaries are used
        _run([*pip, "-e", str(PROJECT_ROOT)])  # base install: numpy, onnx, onnxruntime, pillow
        stamp.write_text(want + "\n")
        return _with_stub(env)


def _with_stub(env: ServingEnv) -> ServingEnv:
    """Copy the stub for the environment's Python into the Python backend's folder."""
    version = subprocess.run([str(env.python), "-c", "import sys; print('%d.%d' % "
                              "sys.version_info[:2])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    source = env.tritonserver_dir / "python_backend_stubs" / version / STUB
    if not source.is_file():
        raise BadInputError(env.root, "a Python between 3.8 and 3.13 (nvidia-pytriton ships "
                            "stubs for those)", f"Python {version}",
                            "make the environment with a supported Python")
    target = env.backend_dir / "python" / STUB
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        shutil.copy2(source, target)  # same depth as the source: its RPATH still resolves
    ldd = subprocess.run(["ldd", str(target)], capture_output=True, text=True,
                         env={**os.environ, **env.library_path()})
    missing = [line.split()[0] for line in ldd.stdout.splitlines() if "not found" in line]
    if missing:
        raise BadInputError(target, "the Python backend stub's shared libraries",
                            f"{', '.join(missing)} missing",
                            f"install the shared libpython for Python {version} (Debian: "
                            f"apt-get install libpython{version}) or make the environment "
                            "with a Python built with --enable-shared")
    return env


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).split())[-300:]
        raise BadInputError(None, "the serving environment to install",
                            f"'{' '.join(command[:6])} ...' failed: {tail}",
                            "check the network to PyPI, then rerun")
