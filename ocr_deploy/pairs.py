"""An artifact and its JSON companion (a build sidecar, an export parity report), written
and read as one pair that can never disagree.

The companion records the artifact's SHA-256 under ``artifact_sha256``. A commit (under an
exclusive lock on the folder, so concurrent writers take turns) goes:

1. the artifact and the companion are written to temporary files and flushed;
2. the artifact's temporary file is renamed to its *shadow* ``.NAME.pair-<sha256>``;
3. the companion is published (``os.replace``; without ``force`` ``os.link``, which fails
   if another run created it meanwhile) — **the commit point**;
4. the shadow is published as the artifact (``os.replace``, or ``os.link`` without
   ``force``), and leftover shadows are removed.

So at every instant the published companion's hash is that of the artifact or of its
shadow. ``read_pair`` reads the companion, then hashes the artifact, and falls back to the
shadow the companion names: a reader sees the old pair or the new pair — including after a
kill -9 between any two steps. The next commit completes an interrupted one (step 4) first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import BadInputError, OutputExistsError, PairMismatchError
from ocr_deploy.files import (
    clean_stale_temps,
    fsync_file,
    fsync_folder,
    pause_point,
    temp_file_for,
    writing,
)

HASH_KEY = "artifact_sha256"
READ_ATTEMPTS = 5  # a reader racing a commit retries (the commit takes milliseconds)


@dataclass
class PairWrite:
    """What ``pair_output`` yields: write the artifact to ``artifact_tmp``, then set
    ``companion`` to the JSON-able dict to write beside it (``artifact_sha256`` is added)."""

    artifact_tmp: Path
    companion: dict | None = None


@dataclass(frozen=True)
class Pair:
    """A verified pair: ``artifact`` is the file whose SHA-256 the ``companion`` records
    (the artifact path, or its shadow while a commit is completing); ``content`` its bytes
    when they were asked for (they are then the very bytes that were hashed)."""

    artifact: Path
    companion: dict
    sha256: str
    identity: tuple
    content: bytes | None = None

    def unchanged(self) -> bool:
        """Whether ``artifact`` is still the very file that was hashed (same inode, size and
        modification time): check it after loading by path, since a concurrent commit may
        replace the artifact or remove the shadow meanwhile (then read the pair again)."""
        try:
            return _identity(os.stat(self.artifact)) == self.identity
        except OSError:
            return False


def shadow_path(artifact: Path, sha256: str) -> Path:
    """``engines/.x.engine.pair-<sha256>``: the artifact while its pair is being committed."""
    artifact = Path(artifact)
    return artifact.with_name(f".{artifact.name}.pair-{sha256}")


@contextlib.contextmanager
def pair_output(artifact: Path, companion: Path, force: bool = False) -> Iterator[PairWrite]:
    """Write ``artifact`` and its JSON ``companion`` as one pair (see the module docstring).

    Without ``force`` an existing artifact or companion — also one another run created
    while this one worked — is ``OutputExistsError`` (exit 2) and nothing is written.
    """
    artifact, companion = Path(artifact), Path(companion)
    write = PairWrite(temp_file_for(artifact))
    companion_tmp = shadow = None
    committed = False
    try:
        with writing(artifact):
            yield write
        with writing(companion):
            companion_tmp, digest = _write_companion(write, companion)
        pause_point("pair-written")
        with _folder_lock(artifact.parent):
            _complete_interrupted(artifact, companion)
            clean_stale_temps(artifact.parent)  # what killed writers left (not just once)
            if not force:
                for path in (artifact, companion):
                    if os.path.lexists(path):
                        raise _exists(path)
            shadow = shadow_path(artifact, digest)
            os.replace(write.artifact_tmp, shadow)
            pause_point("pair-shadowed")
            _publish(companion_tmp, companion, force)
            committed = True
            pause_point("pair-committed")
            try:
                _publish(shadow, artifact, force)
            except OutputExistsError:  # a foreign file appeared: undo the commit
                committed = False
                companion.unlink()
                raise
            pause_point("pair-published")
            _remove_shadows(artifact)
            fsync_folder(artifact.parent)
    finally:
        leftovers = [write.artifact_tmp, companion_tmp] + ([] if committed else [shadow])
        for path in leftovers:
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _write_companion(write: PairWrite, companion: Path) -> tuple[Path, str]:
    """The companion, with the artifact's hash, in a flushed temporary file; and the hash."""
    if write.companion is None:
        raise TypeError("pair_output: set .companion before leaving the block")
    digest = _sha256(write.artifact_tmp)
    fsync_file(write.artifact_tmp)
    companion_tmp = temp_file_for(companion)
    text = json.dumps({**write.companion, HASH_KEY: digest}, indent=2, default=str)
    companion_tmp.write_text(text + "\n")
    fsync_file(companion_tmp)
    return companion_tmp, digest


def write_pair(artifact: Path, data: bytes, companion: Path, companion_data: dict,
               force: bool = False) -> None:
    """Write ``data`` as ``artifact`` and ``companion_data`` as its companion, as one pair."""
    with pair_output(artifact, companion, force) as write:
        write.artifact_tmp.write_bytes(data)
        write.companion = companion_data


def read_pair(artifact: Path, companion: Path, what: str = "companion",
              content: bool = False) -> Pair:
    """Read ``companion`` (a ``what``: "sidecar", "parity report") and find the artifact it
    belongs to; a pair that does not belong together is ``PairMismatchError`` (exit 2), a
    missing or malformed companion ``BadInputError``. ``content``: also return the
    artifact's bytes (read once, hashed, so immune to later replacements)."""
    artifact, companion = Path(artifact), Path(companion)
    found = "no such file"
    for attempt in range(READ_ATTEMPTS):
        data = _read_companion(artifact, companion, what)
        expected = data.get(HASH_KEY)
        if not (isinstance(expected, str) and len(expected) == 64):
            raise PairMismatchError(companion, f"a {what} of {artifact.name} that records "
                                    f"its SHA-256 under '{HASH_KEY}'", "none",
                                    "rebuild the pair with this version of ocr-deploy")
        for candidate in (artifact, shadow_path(artifact, expected)):
            try:
                identity, digest, body = _hash_with_identity(candidate, content)
            except FileNotFoundError:
                continue
            if digest == expected:
                return Pair(candidate, data, digest, identity, body)
            found = f"SHA-256 {digest[:16]}..."
        time.sleep(0.02 * (attempt + 1))  # a commit may be under way: read again
    if found == "no such file":
        raise BadInputError(artifact, "an existing file", "no such file", "check the path")
    raise PairMismatchError(artifact, f"the artifact whose SHA-256 {companion.name} records "
                            f"({expected[:16]}...)", found,
                            "the two files were changed or copied separately: rebuild them "
                            "(or copy both together)")


def _read_companion(artifact: Path, companion: Path, what: str) -> dict:
    try:
        data = json.loads(companion.read_text())
    except FileNotFoundError:
        raise BadInputError(artifact, f"its {what} {companion.name} beside it", "none",
                            "rebuild it, which writes both") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(companion, f"a JSON {what} of {artifact.name}",
                            f"unreadable content ({exc})", "rebuild the pair") from exc
    if not isinstance(data, dict):
        raise BadInputError(companion, "a JSON object", f"a {type(data).__name__}",
                            "rebuild the pair")
    return data


def _publish(source: Path, target: Path, force: bool) -> None:
    if force:
        os.replace(source, target)
        return
    try:
        os.link(source, target)  # atomic, and fails if the target exists
    except FileExistsError:
        raise _exists(target) from None
    source.unlink()


def _exists(path: Path) -> OutputExistsError:
    return OutputExistsError(path, "a path that does not exist yet", "an existing file "
                             "(perhaps written by another run meanwhile)",
                             "pass --force to replace it (atomically), or choose another -o")


def _complete_interrupted(artifact: Path, companion: Path) -> None:
    """Finish a commit a killed writer left after its commit point (step 4)."""
    try:
        expected = json.loads(companion.read_text()).get(HASH_KEY)
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(expected, str) and shadow_path(artifact, expected).is_file():
        os.replace(shadow_path(artifact, expected), artifact)
    _remove_shadows(artifact)


def _remove_shadows(artifact: Path) -> None:
    for path in artifact.parent.glob(f".{artifact.name}.pair-*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if the process dies
        yield
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    return _hash_with_identity(path, False)[1]


def _hash_with_identity(path: Path, keep: bool) -> tuple[tuple, str, bytes | None]:
    digest, blocks = hashlib.sha256(), []
    with open(path, "rb") as handle:
        identity = _identity(os.fstat(handle.fileno()))
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            if keep:
                blocks.append(block)
    return identity, digest.hexdigest(), b"".join(blocks) if keep else None


def _identity(info: os.stat_result) -> tuple:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns
