"""Atomic output, temporary files and folders, content hashing.

Outputs are written to a temporary file in the destination folder and renamed into
place, so a failed run never leaves a half-written file and never replaces a good one.
Temporary names are ``.NAME.tmp-<host>-<pid>-<random>``: hidden, and ending in no suffix an
artifact glob (``*.onnx``, ``*.engine``, ``*.json``) matches; the host and process id let
later runs remove the leftovers of killed ones (``clean_stale_temps``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ocr_deploy.errors import BadInputError, OcrDeployError, OutputExistsError, WriteError

PAUSE_ENV = "OCR_DEPLOY_TEST_PAUSE"  # tests only: "POINT:FLAGFILE" pauses at a write point
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_FILE = re.compile(r"^\..+\.tmp-([0-9a-f]{6})-(\d+)-[^.]+$")
_CLEANED: set[str] = set()  # folders this process has cleaned of stale temporary files
# errno values that say the machine, not the program, stopped a write
WRITE_ERRNOS = {errno.ENOSPC: "no space left on its device", errno.EDQUOT: "the disk quota "
                "used up", errno.EROFS: "a read-only filesystem", errno.EACCES: "no permission "
                "to write there", errno.EPERM: "no permission to write there"}
NEARLY_FULL = 1 << 20  # bytes free under which a writer's failure is taken for a full disk


def write_error(path: Path, reason: str) -> WriteError:
    """The one-line error for an output the machine would not let us write (exit 6)."""
    return WriteError(path, "to write the output here", reason,
                      "free space or fix the permissions, or write elsewhere (-o / --workdir); "
                      "nothing was replaced")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failure to write ``path`` that the machine caused into ``WriteError`` (exit 6):
    an ``OSError`` whose errno is in ``WRITE_ERRNOS``, or any failure of a writer that
    reports none (ONNX Runtime and onnx write from C++ and raise their own errors) while the
    disk holding ``path`` has less than ``NEARLY_FULL`` bytes free."""
    try:
        yield
    except OcrDeployError:
        raise
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(Path(exc.filename or path), WRITE_ERRNOS[exc.errno]) from exc
        raise
    except Exception as exc:
        free = _free_bytes(Path(path))
        if free is not None and free < NEARLY_FULL:
            raise write_error(path, f"a nearly full disk ({free} bytes free; the writer "
                              f"said: {' '.join(str(exc).split())[:120]})") from exc
        raise


def _free_bytes(path: Path) -> int | None:
    probe = path if path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def check_writable_output(path: Path, force: bool) -> None:
    """Fail early, before any slow work, if ``path`` cannot or must not be written: an
    existing output without ``force`` or a file where the folder should be (exit 2), a
    folder the machine will not let us write in (exit 6, from a real attempt's error)."""
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
    if not probe.is_dir():
        raise BadInputError(path, "a writable output folder", f"'{probe}' is not writable "
                            "(a file, not a folder)", "choose another -o")
    try:  # a real attempt, not os.access: root passes that check on a read-only mount
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise _unwritable(path, probe, exc) from exc


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    tmp = temp_file_for(path)
    try:
        with writing(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def temp_file_for(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (see the module docstring for its
    name), after removing stale ones of dead processes; a folder the machine will not let
    us write in is exit 6, a path that cannot be a folder exit 2."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.path.realpath(path.parent)
        if folder not in _CLEANED:  # once per folder and process: writes stay O(1)
            _CLEANED.add(folder)
            clean_stale_temps(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_HOST}-{os.getpid()}-",
                                    dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, path.parent, exc) from exc
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    return Path(name)


def _unwritable(path: Path, folder: Path, exc: OSError) -> OcrDeployError:
    """The error for a folder no file could be made in, decided from the error itself:
    the machine's refusal (``WRITE_ERRNOS``) is exit 6, anything else (a file where a
    folder should be, a name too long) bad input, exit 2."""
    if exc.errno in WRITE_ERRNOS:
        return write_error(path, f"'{folder}': {WRITE_ERRNOS[exc.errno]}")
    return BadInputError(path, "a writable output folder",
                         f"no temporary file could be made in '{folder}' "
                         f"({exc.strerror or exc})", "choose another -o")


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files that dead processes of this host left in ``folder``."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            match = _TEMP_FILE.match(entry.name)
            if match and match[1] == _HOST and not _alive(int(match[2])):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temporary files."""
    return bool(_TEMP_FILE.match(name))


@contextlib.contextmanager
def private_tempdir(prefix: str) -> Iterator[Path]:
    """A fresh folder ``<tmp>/<prefix><host>-<pid>-<random>``, removed afterwards.

    Folders with this prefix left by dead processes of this host (a kill -9) are removed
    first; an unusable temporary location is exit 2 naming it.
    """
    root = Path(tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"([0-9a-f]{6})-(\d+)-[A-Za-z0-9_]+$")
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            match = pattern.match(entry.name)
            if match and match[1] == _HOST and not _alive(int(match[2])):
                shutil.rmtree(entry, ignore_errors=True)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{_HOST}-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise WriteError(root, "a writable temporary folder",
                         f"none could be made ({exc.strerror or exc})",
                         "set TMPDIR to a writable folder with free space") from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def latest_file(folder: Path, pattern: str, skip_suffixes: tuple[str, ...] = ()) -> Path | None:
    """The most recently modified readable, non-empty regular file of ``folder`` matching
    ``pattern``; hidden files, temporary files and names ending in ``skip_suffixes`` are
    ignored. None when there is none."""
    found = []
    for path in Path(folder).glob(pattern):
        if path.name.startswith(".") or is_temp_name(path.name) \
                or path.name.endswith(tuple(skip_suffixes)):
            continue
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size == 0 or not handle.read(1):
                    continue
        except OSError:
            continue
        found.append((info.st_mtime_ns, path.name, path))
    return max(found)[2] if found else None


def fsync_file(path: Path) -> None:
    """Flush a written file to disk (before it is renamed into place)."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (after a rename into it); a no-op where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pause_point(name: str) -> None:
    """Tests only: when ``OCR_DEPLOY_TEST_PAUSE`` is ``name:FLAG``, create FLAG and wait
    until it is removed, so a test can kill -9 this process at a named write point."""
    point, _, flag = os.environ.get(PAUSE_ENV, "").partition(":")
    if point != name or not flag:
        return
    Path(flag).write_text(str(os.getpid()))
    while os.path.exists(flag):
        time.sleep(0.01)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


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
