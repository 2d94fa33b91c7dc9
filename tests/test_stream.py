"""``Segmenter.stream`` (``ocr_deploy.runtime.stream``): results in order and equal to
per-frame ``predict``, bounded read-ahead, the ``latest`` policy, early close, failing
stages; on hand-built plain and end-to-end artifacts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from e2e_models import save, segnet

from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.end_to_end import make_end_to_end
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.stream import STAGES, THREAD_PREFIX, FrameError


def _frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), np.uint8) for size in sizes]


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def _wait_for_no_threads(seconds: float = 2.0) -> list[threading.Thread]:
    end = time.monotonic() + seconds
    while _stream_threads() and time.monotonic() < end:
        time.sleep(0.01)
    return _stream_threads()


def _endless(frame, counter: dict):
    """An endless source that counts the frames taken from it and notes when it closes."""
    try:
        while True:
            counter["pulled"] += 1
            yield frame
    finally:
        counter["closed"] = True


def test_results_in_order_equal_per_frame_predict(segmenter):
    # the model's size (its in-graph labels) and others (logits resized, then argmax)
    frames = _frames([(64, 64), (40, 90), (64, 64), (100, 30), (7, 9)] * 3)
    with segmenter.stream(frames) as stream:
        labels = list(stream)
    assert len(labels) == len(frames)
    for frame, got in zip(frames, labels, strict=True):
        assert np.array_equal(got, segmenter.predict(frame))
    with segmenter.stream(iter(frames), scores=True, with_frames=True) as stream:
        for position, (index, frame, scores) in enumerate(stream):
            assert index == position and frame is frames[index]
            assert np.array_equal(scores, segmenter.predict_scores(frame))
    assert stream.stats()["frames"] == len(frames) and stream.dropped == 0


def test_end_to_end_and_plain_artifacts_stream_alike(tmp_path):
    core = segnet("NHWC")
    wrapped, _ = make_end_to_end(core, ImageSizes((5, 6), (40, 50)), scores=True)
    frames = _frames([(30, 40), (12, 16), (40, 50), (5, 6)] * 2, seed=1)
    with Segmenter.open(save(wrapped, tmp_path, "e2e")) as e2e, \
            Segmenter.open(save(core, tmp_path, "plain")) as plain:
        for seg in (e2e, plain):
            with seg.stream(frames) as stream:
                got = list(stream)
            assert [m.shape for m in got] == [f.shape[:2] for f in frames]
            for frame, labels in zip(frames, got, strict=True):
                assert np.array_equal(labels, seg.predict(frame))
        with e2e.stream(frames, scores=True) as stream:
            for frame, scores in zip(frames, stream, strict=True):
                assert np.array_equal(scores, e2e.predict_scores(frame))
        with pytest.raises(FrameError, match=r"frame 1 \(prepare stage\)") as failure:
            list(e2e.stream(_frames([(30, 40), (60, 60)])))  # outside its range
        assert failure.value.index == 1 and failure.value.exit_code == 2


def test_back_pressure_bounds_the_frames_read_ahead(segmenter):
    counter = {"pulled": 0}
    depth, ahead = 2, []
    with segmenter.stream(_endless(_frames([(64, 64)])[0], counter), depth=depth) as stream:
        for taken, _ in enumerate(stream, start=1):
            time.sleep(0.01)  # a slow consumer
            ahead.append(counter["pulled"] - taken)
            if taken == 40:
                break
    # at most a full queue before and one item inside each stage
    bound = len(STAGES) * depth + len(STAGES)
    assert max(ahead) <= bound, ahead
    assert max(ahead) > depth, ahead  # and the stages did work ahead of the consumer


def test_latest_policy_drops_stale_frames_and_counts_them(segmenter):
    frames = _frames([(64, 64)] * 60, seed=2)
    kept = []
    with segmenter.stream(frames, policy="latest", depth=1, with_frames=True) as stream:
        for index, frame, labels in stream:
            time.sleep(0.02)  # slower than the source
            kept.append(index)
            assert np.array_equal(labels, segmenter.predict(frame))
    assert stream.dropped > 0 and len(kept) + stream.dropped == len(frames)
    assert kept == sorted(set(kept)) and kept[-1] == len(frames) - 1  # in order, the newest
    assert stream.stats()["dropped"] == stream.dropped


def test_closing_early_stops_every_stage(segmenter):
    assert _wait_for_no_threads() == []  # those of earlier streams, ended, have gone
    counter = {"pulled": 0}
    stream = segmenter.stream(_endless(_frames([(50, 70)])[0], counter))
    assert len(_stream_threads()) == len(STAGES)
    for _ in range(3):
        next(stream)
    stream.close()
    assert _stream_threads() == [] and counter.get("closed")
    with pytest.raises(StopIteration):
        next(stream)
    pulled = counter["pulled"]
    time.sleep(0.1)
    assert counter["pulled"] == pulled  # nothing reads any more
    counter = {"pulled": 0}
    for _ in segmenter.stream(_endless(_frames([(50, 70)])[0], counter)):
        break  # no reference left: dropping the stream stops it too
    assert _wait_for_no_threads() == [] and counter.get("closed")


def test_failing_stages_name_the_frame(segmenter, monkeypatch):
    frames = _frames([(64, 64)] * 6, seed=3)
    frames[3] = frames[3].astype(np.float32)
    got = []
    with pytest.raises(FrameError) as failure, segmenter.stream(frames) as stream:
        got.extend(stream)
    assert len(got) == 3 and failure.value.index == 3 and failure.value.stage == "prepare"
    assert isinstance(failure.value.cause, BadInputError) and failure.value.exit_code == 2
    assert "frame 3 (prepare stage)" in str(failure.value) and "\n" not in str(failure.value)

    def broken_source():
        yield from _frames([(64, 64)] * 2)
        raise OSError("the camera went away")

    with pytest.raises(FrameError, match="camera went away") as failure:
        list(segmenter.stream(broken_source()))
    assert (failure.value.index, failure.value.stage) == (2, "read")

    calls = {"n": 0}
    run = segmenter.run

    def flaky_run(batch, outputs=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("device lost")
        return run(batch, outputs)

    monkeypatch.setattr(segmenter, "run", flaky_run)
    with pytest.raises(FrameError) as failure:
        list(segmenter.stream(_frames([(64, 64)] * 8)))
    assert (failure.value.index, failure.value.stage) == (4, "infer")
    assert failure.value.exit_code == 1 and isinstance(failure.value.__cause__, RuntimeError)
    assert _wait_for_no_threads() == []


def test_bad_stream_options_are_refused(segmenter, nchw_onnx):
    with pytest.raises(BadInputError, match="policy"):
        segmenter.stream([], policy="newest")
    with pytest.raises(BadInputError, match="depth"):
        segmenter.stream([], depth=0)
    with Segmenter.open(nchw_onnx) as labels_only, \
            pytest.raises(BadInputError, match="scores output"):
        labels_only.stream([], scores=True)
    assert list(segmenter.stream([])) == []
