"""How much memory a command may use (``--memory-budget``) and the batch sizes that fit it.

The default budget is ``DEFAULT_FRACTION`` of the memory available when the command starts:
``MemAvailable`` of ``/proc/meminfo``, or the room left under the process's cgroup limit
when that is lower (a container). Half leaves room for the rest of the machine, for the
allocator's fragmentation and for what the estimates below do not see.

A step that holds ``per_sample`` bytes for each image of a batch, on top of ``fixed``
bytes it holds whatever the batch, runs ``batch_size(per_sample, fixed)`` images at once
(at least one); ``precision.shapes.forward_bytes`` estimates ``per_sample`` for one forward
pass of an ONNX model (its largest set of activations alive at once). This module imports
nothing of the project but ``errors``: every layer may use it.

When an allocation fails anyway, ``exhaustion(step)`` turns the failure (NumPy's
``MemoryError``, ONNX Runtime's arena or ``bad_alloc`` errors, TensorRT's and CUDA's
out-of-memory errors, ``ENOMEM``) into ``MemoryExhaustedError``: exit code 7, one line
naming the step, the size that was asked for when the message says it, and what to do.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import BadInputError, MemoryExhaustedError

DEFAULT_FRACTION = 0.5  # of the memory available at start
# Batches hold at most this much input: beyond it a larger batch buys ONNX Runtime on a CPU
# little speed while every image adds its working memory (a 256x512 image is 1.5 MiB).
BATCH_INPUT_BYTES = 2 << 20
FALLBACK_BYTES = 2 << 30  # where nothing says what is available (not Linux)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# How ONNX Runtime (its BFC arena, the C++ allocator), TensorRT and CUDA say they ran out.
_OUT_OF_MEMORY = re.compile(
    r"Failed to allocate memory|bad_alloc|bad allocation|BFCArena|out of memory|"
    r"OutOfMemory|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY|"
    r"could not be allocated|Cannot allocate memory|Unable to allocate", re.I)
_ASKED = re.compile(r"(?:buffer of size|Unable to allocate)\s+([0-9.]+)\s*(KiB|MiB|GiB|TiB|B)?|"
                    r"(?:\(|size was )([0-9]+) bytes", re.I)
_MEMINFO = Path("/proc/meminfo")
_CGROUP_V2 = Path("/sys/fs/cgroup")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def parse_size(text: str) -> int:
    """Bytes of ``2G``, ``512M``, ``1.5GiB``, ``800MB`` or a plain number of bytes (powers
    of 1024 throughout); ``ValueError`` for anything else or a size under 1 MiB."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not match:
        raise ValueError(f"expected a size like 2G or 512M, found '{text}'")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < 1 << 20:
        raise ValueError(f"expected a size of at least 1M, found '{text}'")
    return int(value)


def format_size(size: float) -> str:
    """``1.50 GiB``, ``512 MiB``: a size for people."""
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


def available_bytes() -> tuple[int, str] | None:
    """``(bytes, where from)``: the memory available now (``MemAvailable``), or the room
    left under this process's cgroup limit when that is lower; None where neither is read."""
    found = []
    try:
        match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", _MEMINFO.read_text(), re.M)
        if match:
            found.append((int(match.group(1)) * 1024, "MemAvailable"))
    except OSError:
        pass
    room = _cgroup_room()
    if room is not None:
        found.append((room, "cgroup limit"))
    return min(found) if found else None


def _cgroup_room() -> int | None:
    """The cgroup's memory limit less its usage (v2, else v1); None when unlimited."""
    try:
        group = Path("/proc/self/cgroup").read_text().splitlines()
        v2 = next((line.split("::", 1)[1] for line in group if line.startswith("0::")), None)
    except OSError:
        v2 = None
    candidates = []
    if v2 is not None:
        folder = _CGROUP_V2 / v2.lstrip("/")
        candidates.append((folder / "memory.max", folder / "memory.current"))
    candidates.append((_CGROUP_V1 / "memory.limit_in_bytes", _CGROUP_V1 / "memory.usage_in_bytes"))
    for limit_file, usage_file in candidates:
        try:
            limit = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # v1 says "unlimited" with a huge value
            return max(0, int(limit) - usage)
    return None


@dataclass(frozen=True)
class MemoryBudget:
    """The bytes a command may hold at once, and where the figure came from."""

    bytes: int
    source: str

    @classmethod
    def default(cls) -> MemoryBudget:
        """``DEFAULT_FRACTION`` of the memory available now."""
        found = available_bytes()
        if found is None:
            return cls(FALLBACK_BYTES, "a fixed default (the available memory is unknown)")
        available, where = found
        return cls(max(1 << 20, int(available * DEFAULT_FRACTION)),
                   f"{DEFAULT_FRACTION:.0%} of {format_size(available)} available ({where})")

    @classmethod
    def given(cls, text: str | int | None) -> MemoryBudget:
        """``--memory-budget TEXT`` (None: the default)."""
        if text is None:
            return cls.default()
        try:
            size = text if isinstance(text, int) else parse_size(text)
        except ValueError as exc:
            raise BadInputError(None, "--memory-budget as a size like 2G or 512M",
                                f"'{text}'", "pass e.g. --memory-budget 4G") from exc
        return cls(size, "--memory-budget")

    def batch_size(self, per_sample: int, fixed: int = 0, largest: int | None = None,
                   input_bytes: int = 0) -> int:
        """How many samples of ``per_sample`` bytes fit beside ``fixed`` bytes: at least
        one, at most ``largest`` and, for samples of ``input_bytes``, no more than
        ``BATCH_INPUT_BYTES`` of input."""
        fits = (self.bytes - fixed) // max(1, per_sample)
        if largest:
            fits = min(fits, largest)
        if input_bytes:
            fits = min(fits, BATCH_INPUT_BYTES // input_bytes)
        return int(max(1, fits))

    def describe(self) -> str:
        return f"{format_size(self.bytes)} ({self.source})"

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "source": self.source}


def memory_budget_arg(text: str) -> MemoryBudget:
    """An argparse type for ``--memory-budget``."""
    import argparse

    try:
        return MemoryBudget(parse_size(text), "--memory-budget")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_memory_budget(parser) -> None:
    """``--memory-budget SIZE`` (default: ``DEFAULT_FRACTION`` of the available memory)."""
    parser.add_argument("--memory-budget", type=memory_budget_arg, metavar="SIZE",
                        help="memory the verification, calibration and parity batches may use, "
                             "e.g. 2G or 512M; batch sizes are derived from it (default: "
                             f"{DEFAULT_FRACTION * 100:.0f}%% of the memory available at start, "
                             "MemAvailable or the cgroup limit if lower)")


def allocation_failure(exc: BaseException) -> tuple[bool, int | None]:
    """Whether ``exc`` is a failed allocation, and the bytes it asked for (None: unknown)."""
    if isinstance(exc, MemoryExhaustedError):
        return False, None  # already said
    text = str(exc)
    failed = isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == 12) \
        or bool(_OUT_OF_MEMORY.search(text))
    if not failed:
        return False, None
    match = _ASKED.search(text)
    if match is None:
        return True, None
    if match.group(3):
        return True, int(match.group(3))
    unit = (match.group(2) or "B").upper()[0]
    return True, int(float(match.group(1)) * _UNITS.get(unit, 1))


# What to do, by command (the commands with a --memory-budget: the default).
_ADVICE = {"ocr-predict": "run fewer images at once (--max-batch 1), use smaller images, or "
                          "free memory",
           "ocr-bench": "use smaller --batch-sizes or --image-size, or free memory"}
_BUDGET_ADVICE = ("give a smaller --memory-budget, or fewer or smaller samples "
                  "(--calib-samples, --val-samples, --parity-samples), or free memory")


def exhausted(step: str, needed: int | None = None, found: str = "",
              command: str | None = None) -> MemoryExhaustedError:
    """The error of ``step`` of ``command`` (``ocr-predict`` ...; default: one with a
    ``--memory-budget``) running out of memory."""
    asked = f" (an allocation of {format_size(needed)} failed)" if needed else ""
    return MemoryExhaustedError(None, f"enough memory for {step}",
                                f"an allocation failure{asked}{': ' + found if found else ''}",
                                _ADVICE.get(command, _BUDGET_ADVICE))


@contextlib.contextmanager
def exhaustion(step: str):
    """Raise ``MemoryExhaustedError`` for ``step`` when an allocation fails within."""
    try:
        yield
    except Exception as exc:
        failed, needed = allocation_failure(exc)
        if not failed:
            raise
        first = " ".join(str(exc).split())[:160]
        raise exhausted(step, needed, f"{type(exc).__name__}: {first}") from exc
