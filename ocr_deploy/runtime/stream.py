"""``Segmenter.stream``: frames in, label maps (or scores) out, in order, with reading,
pre-processing, inference and post-processing overlapped.

Each stage runs in its own thread and hands its work to the next through a bounded queue
(``depth`` items), so frame n+1 is read and prepared while frame n runs and frame n-1 is
post-processed; NumPy, Pillow and the backends release the GIL in their heavy parts.

    read -> [depth] -> prepare -> [depth] -> infer -> [depth] -> finish -> [depth] -> caller

Policies: ``block`` (default) stops reading while the queues are full (back-pressure: a file
is read no faster than it is segmented); ``latest`` (live sources) keeps reading and drops
the oldest frame waiting to be prepared when the queue is full, so results follow the
source instead of falling behind; ``dropped`` counts them. A stage's exception reaches the
caller as ``FrameError`` (the frame's index, the stage, the cause); closing the stream (or
leaving its ``with`` block, or dropping it) stops and joins every thread. A source blocked
inside its own ``next()`` (a camera that stopped sending) can only be left when it returns.

Inference runs ``Segmenter.run`` on one frame at a time (host arrays); the TensorRT
runner's ``run_device`` path is not used here: overlapping host-device copies with compute
would need a second execution context and double-buffered device memory per stream.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Iterable

import numpy as np

from ocr_deploy.errors import EXIT_INTERNAL, BadInputError, OcrDeployError

POLICIES = ("block", "latest")
STAGES = ("read", "prepare", "infer", "finish")
DEPTH = 2  # items each queue holds
POLL_S = 0.05  # how often a waiting stage checks whether the stream was closed
JOIN_S = 5.0  # how long close() waits for each thread
KEPT_TIMINGS = 10_000  # per stage: the latest timings the statistics are taken from
THREAD_PREFIX = "ocr-stream"


class FrameError(OcrDeployError):
    """A stage of a stream failed on one frame: ``index``, ``stage`` and ``cause`` (the
    original exception, also chained as ``__cause__``). Its exit code is the cause's for an
    ``OcrDeployError`` (a bad frame is exit 2), else 1 (internal)."""

    def __init__(self, index: int, stage: str, cause: BaseException):
        self.index, self.stage, self.cause = index, stage, cause
        where = f"frame {index} ({stage} stage)"
        if isinstance(cause, OcrDeployError):
            self.exit_code = cause.exit_code
            super().__init__(cause.path, cause.expected, f"{cause.found} at {where}",
                             cause.action)
        else:
            self.exit_code = EXIT_INTERNAL
            super().__init__(None, f"{where} to succeed",
                             f"{type(cause).__name__}: {cause}",
                             "rerun with --debug for the traceback and report it")


class _Failure:
    """A stage's exception travelling down the pipeline to the caller."""

    def __init__(self, index: int, stage: str, exc: BaseException):
        self.error = FrameError(index, stage, exc)
        self.error.__cause__ = exc


_END = object()  # the source is exhausted


class _State:
    """What the threads share (never the ``FrameStream`` itself, so that dropping the
    stream closes it)."""

    def __init__(self, depth: int):
        self.stop = threading.Event()
        self.queues = [queue.Queue(maxsize=depth) for _ in STAGES]
        self.timings = {stage: collections.deque(maxlen=KEPT_TIMINGS)
                        for stage in (*STAGES, "latency")}
        self.dropped = 0
        self.lock = threading.Lock()

    def put(self, index: int, item) -> bool:
        """Put ``item`` on queue ``index``, waiting while it is full; False once stopped."""
        while not self.stop.is_set():
            try:
                self.queues[index].put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, index: int):
        """The next item of queue ``index``; None once stopped."""
        while not self.stop.is_set():
            try:
                return self.queues[index].get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def put_latest(self, item) -> None:
        """Put a read frame, dropping the oldest waiting one when the queue is full."""
        while not self.stop.is_set():
            try:
                self.queues[0].put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queues[0].get_nowait()
                    with self.lock:
                        self.dropped += 1
                except queue.Empty:
                    continue

    def record(self, stage: str, seconds: float) -> None:
        self.timings[stage].append(seconds)


class FrameStream:
    """An iterator of results, one per frame kept (all of them under ``block``), in the
    frames' order; see the module docstring. Use it in a ``with`` block or ``close()`` it
    when stopping early."""

    def __init__(self, segmenter, frames: Iterable, scores: bool = False,
                 policy: str = "block", depth: int = DEPTH, with_frames: bool = False):
        if policy not in POLICIES:
            raise BadInputError(None, f"a policy among {', '.join(POLICIES)}", repr(policy),
                                "use 'block' (every frame) or 'latest' (live sources)")
        if not isinstance(depth, int) or depth < 1:
            raise BadInputError(None, "a queue depth >= 1", repr(depth), "use the default")
        if scores and segmenter.logits_output is None:
            raise BadInputError(segmenter.source, "an artifact with a scores output",
                                "labels only", "stream label maps (scores=False)")
        segmenter._check_open()
        self.policy, self.with_frames = policy, with_frames
        self.frames_out = 0
        self.last_index: int | None = None
        self._state = state = _State(depth)
        self._started = time.perf_counter()
        self._finished: float | None = None
        self._done = False
        work = [(_read, (state, iter(frames), policy)),
                (_prepare, (state, segmenter, scores)),
                (_infer, (state, segmenter)),
                (_finish, (state, segmenter, scores))]
        self._threads = [threading.Thread(target=target, args=args, daemon=True,
                                          name=f"{THREAD_PREFIX}-{stage}")
                         for stage, (target, args) in zip(STAGES, work, strict=True)]
        for thread in self._threads:
            thread.start()

    @property
    def dropped(self) -> int:
        """Frames the ``latest`` policy dropped so far (0 under ``block``)."""
        return self._state.dropped

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._state.get(len(STAGES) - 1)
        if item is None or item is _END:
            self._end()
            raise StopIteration
        if isinstance(item, _Failure):
            self._end()
            raise item.error
        index, frame, result, read_at = item
        self._state.record("latency", time.perf_counter() - read_at)
        self.frames_out += 1
        self.last_index = index
        return (index, frame, result) if self.with_frames else result

    def stats(self) -> dict:
        """Frames given, dropped, elapsed seconds, frames per second, and per stage (and
        ``latency``: read to handed out) the p50/p90/p99 and mean milliseconds."""
        end = self._finished or time.perf_counter()
        seconds = end - self._started
        stages = {stage: latency_summary(values)
                  for stage, values in self._state.timings.items() if values}
        return {"frames": self.frames_out, "dropped": self.dropped,
                "seconds": round(seconds, 3),
                "fps": round(self.frames_out / seconds, 3) if seconds > 0 else None,
                "policy": self.policy, "latency_ms": stages}

    def close(self) -> None:
        """Stop every stage and wait for its thread (idempotent)."""
        self._end()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_S)

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._finished = time.perf_counter()
        self._state.stop.set()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        state = getattr(self, "_state", None)  # None when __init__ refused its arguments
        if state is not None:
            state.stop.set()


def latency_summary(seconds) -> dict:
    """p50, p90, p99 and mean of durations in seconds, as milliseconds."""
    ms = np.asarray(seconds, np.float64) * 1e3
    return {name: round(float(value), 3) for name, value in (
        ("p50", np.percentile(ms, 50)), ("p90", np.percentile(ms, 90)),
        ("p99", np.percentile(ms, 99)), ("mean", ms.mean()))}


def _stage(state: _State, stage: str, inbox: int, step) -> None:
    """Take items from queue ``inbox``, apply ``step`` and pass them on, until the end, a
    failure (passed on as it is) or a stop."""
    while True:
        item = state.get(inbox)
        if item is None:
            return
        if item is not _END and not isinstance(item, _Failure):
            start = time.perf_counter()
            try:
                item = step(*item)
            except Exception as exc:
                item = _Failure(item[0], stage, exc)
            state.record(stage, time.perf_counter() - start)
        if not state.put(inbox + 1, item) or item is _END or isinstance(item, _Failure):
            return


def _read(state: _State, frames, policy: str) -> None:
    index = 0
    try:
        while not state.stop.is_set():
            start = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                state.put(0, _END)
                return
            except Exception as exc:
                state.put(0, _Failure(index, "read", exc))
                return
            now = time.perf_counter()
            state.record("read", now - start)
            item = (index, frame, now)
            if policy == "latest":
                state.put_latest(item)
            elif not state.put(0, item):
                return
            index += 1
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # a generator (a decoder) releases what it holds, in its own thread


def _prepare(state: _State, segmenter, scores: bool) -> None:
    def step(index, frame, read_at):
        size = np.shape(frame)[:2]
        if scores:
            output = segmenter.logits_output
        else:
            (output,) = segmenter.outputs_for([size])
        return index, frame, segmenter.prepare([frame]), output, read_at

    _stage(state, "prepare", 0, step)


def _infer(state: _State, segmenter) -> None:
    def step(index, frame, batch, output, read_at):
        return index, frame, segmenter.run(batch, [output])[output], output, read_at

    _stage(state, "infer", 1, step)


def _finish(state: _State, segmenter, scores: bool) -> None:
    def step(index, frame, value, output, read_at):
        size = np.shape(frame)[:2]
        return index, frame, segmenter.finish(value, 0, size, output, scores), read_at

    _stage(state, "finish", 2, step)
