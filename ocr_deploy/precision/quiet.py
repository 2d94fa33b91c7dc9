"""Keep ONNX Runtime's quantisation tools from printing on stdout or the root logger.

Its calibrators ``print()`` progress and its quantiser logs advice through the root
logger; stdout must stay clean for ``--json``, so both go to stderr (or nowhere).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_onnxruntime(verbose: bool = False) -> Iterator[None]:
    """Send ORT's prints to stderr (``verbose``) or discard them; mute root-logger advice."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
            yield
    finally:
        root.setLevel(level)
