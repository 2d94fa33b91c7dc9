"""Peak memory: the process's resident set (Linux: reset per measurement) and the GPU's."""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> str:
    """Reset the process's peak RSS if the OS allows it (Linux: ``clear_refs``).

    Returns how peaks are measured: ``"since reset"`` or ``"process lifetime"``.
    """
    try:
        _CLEAR_REFS.write_text("5")
        return "since reset"
    except OSError:
        return "process lifetime"


def peak_rss_mib() -> float:
    """The peak resident set size in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
        if match:
            return round(int(match.group(1)) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def current_rss_mib() -> float | None:
    """The resident set size now, in MiB (None where /proc is missing)."""
    try:
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return round(int(match.group(1)) / 1024, 1) if match else None


def gpu_used_mib(device_id: int = 0) -> float | None:
    """Memory in use on the GPU (all processes) in MiB, or None without cuda-python/GPU."""
    try:
        from ocr_deploy.cuda import memory_used_mib

        return round(memory_used_mib(device_id), 1)
    except Exception:  # no cuda-python, no driver, no GPU: there is nothing to report
        return None
