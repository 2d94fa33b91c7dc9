"""Progress reporting for long commands: timed stages on stderr, quiet on request."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


class Progress:
    """Prints ``[i/n] stage ... done in 1.2 s`` lines to stderr (nothing when quiet)."""

    def __init__(self, total_stages: int, quiet: bool = False, stream=None):
        self.total = total_stages
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.index = 0
        self.timings: dict[str, float] = {}

    def note(self, message: str) -> None:
        """Print an informational line (a decision the tool took, a warning)."""
        if not self.quiet:
            print(f"      {message}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage and report its start and end."""
        self.index += 1
        if not self.quiet:
            print(f"[{self.index}/{self.total}] {name} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if not self.quiet:
            print(f"      done in {elapsed:.1f} s", file=self.stream, flush=True)
