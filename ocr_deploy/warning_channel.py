"""One channel for warnings, formatted the same way by every command: ``warning: MESSAGE``
lines on stderr, shown even with ``-q`` (a warning is not progress).

``Progress.warn``, the CLIs and the library's own notes call ``warn``; ``routed_warnings``
(installed by ``cli_support.run_command`` while a command runs) sends Python's
``warnings.warn`` (the runners', ONNX Runtime's provider fallback, TensorRT's log) through
it too, instead of Python's ``file:line: UserWarning: MESSAGE``. A warning repeated for
many subjects (unstable timings per benchmark row) becomes one line with ``folded``.
Imports nothing of the project: every layer may use it.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence

PREFIX = "warning: "


def line(message: str) -> str:
    """``message`` as a warning line."""
    return f"{PREFIX}{message}"


def warn(message: str, stream=None) -> None:
    """Print ``message`` as a warning line on ``stream`` (default stderr)."""
    print(line(message), file=stream or sys.stderr, flush=True)


def folded(message: str, subjects: Sequence[str], advice: str = "") -> str:
    """One warning line for ``message`` said of every one of ``subjects``, then
    ``advice``."""
    return line(f"{message}: {', '.join(subjects)}" + (f"; {advice}" if advice else ""))


@contextlib.contextmanager
def routed_warnings(stream=None) -> Iterator[None]:
    """While the block runs, ``warnings.warn`` prints as ``warning: MESSAGE`` (a category
    other than ``UserWarning`` named after it); Python's filters still show a repeated
    warning once."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, text=None) -> None:
        kind = "" if category is UserWarning else f" ({category.__name__})"
        warn(f"{message}{kind}", file or stream)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
