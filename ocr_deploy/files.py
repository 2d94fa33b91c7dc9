"""Atomic output and content hashing.

Outputs are written to a temporary file in the destination folder and renamed into
place, so a failed run never leaves a half-written file and never replaces a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ocr_deploy.errors import BadInputError, OutputExistsError


def check_writable_output(path: Path, force: bool) -> None:
    """Fail early, before any slow work, if ``path`` cannot or must not be written."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(path, "a file path for the output", "a directory",
                            "give a file name, e.g. -o out/model.onnx")
    if path.exists() and not force:
        raise OutputExistsError(path, "a path that does not exist yet", "an existing file",
                                "pass --force to replace it (atomically), or choose another -o")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():  # the folder will be created: check its nearest existing parent
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(path, "a writable output folder", f"'{probe}' is not writable",
                            "choose another -o or fix the folder's permissions")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
