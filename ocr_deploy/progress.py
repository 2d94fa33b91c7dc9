"""Progress reporting for long commands: timed stages on stderr, quiet on request."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from ocr_deploy.warning_channel import warn


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

    def warn(self, message: str) -> None:
        """Print a warning (shown even when quiet: it is not progress)."""
        warn(message, self.stream)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage and report its start and end; an allocation failure within is
        ``MemoryExhaustedError`` naming the stage (``memory_budget.exhaustion``)."""
        from ocr_deploy.memory_budget import exhaustion

        self.index += 1
        if not self.quiet:
            print(f"[{self.index}/{self.total}] {name} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        with exhaustion(name):
            yield
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if not self.quiet:
            print(f"      done in {elapsed:.1f} s", file=self.stream, flush=True)


class Counter:
    """``label: i/n`` progress for loops: one rewritten line on a terminal, else every 10 %;
    with ``eta``, the estimated time left from the rate so far."""

    def __init__(self, label: str, total: int, quiet: bool = False, stream=None,
                 eta: bool = False):
        self.label, self.total, self.quiet, self.eta = label, max(total, 1), quiet, eta
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_decile = -1
        self.start = time.perf_counter()

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` items are finished."""
        if self.quiet:
            return
        text = f"      {self.label}: {done}/{self.total}"
        if self.eta and 0 < done < self.total:
            left = (time.perf_counter() - self.start) / done * (self.total - done)
            text += f", about {left:.0f} s left"
        elif self.eta and done >= self.total:
            text += f", {time.perf_counter() - self.start:.1f} s"
        if self.tty:
            end = "\n" if done >= self.total else ""
            print(f"\r{text}", end=end, file=self.stream, flush=True)
        elif done * 10 // self.total > self.last_decile:
            self.last_decile = done * 10 // self.total
            print(text, file=self.stream, flush=True)
