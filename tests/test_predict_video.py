"""ocr-predict on videos (the ``video`` extra, PyAV) and with ``--tile``: a clip made here
with PyAV goes end to end (frame count, frame rate, label maps equal to per-frame
``predict`` on the decoded frames); clean one-line errors for unreadable video and a
missing extra."""

from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest
from e2e_models import save, segnet
from PIL import Image

from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.graph.end_to_end import make_end_to_end
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.predict_cli import main
from ocr_deploy.runtime.video import video_name

FRAMES, FPS, SIZE = 12, Fraction(10), (48, 80)  # SIZE: (H, W)


def _decoded(path) -> tuple[list[np.ndarray], Fraction]:
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], \
            Fraction(stream.average_rate)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A small H.264 clip of moving blobs, made with PyAV."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(0)
    scene = np.repeat(np.repeat(rng.integers(0, 256, (SIZE[0] // 8, 40, 3), np.uint8), 8, 0),
                      8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(
                scene[:, 4 * i:4 * i + SIZE[1]]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_video_end_to_end(nhwc_onnx, clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(nhwc_onnx), str(clip), "-o", str(out), "--save-labels", "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["frames"] == FRAMES and summary["dropped"] == 0
    assert summary["input_fps"] == float(FPS) and summary["fps"] > 0
    assert set(summary["latency_ms"]) >= {"read", "prepare", "infer", "finish", "write"}
    written, fps = _decoded(out / "clip.overlay.mp4")
    assert len(written) == FRAMES and fps == FPS and written[0].shape == (*SIZE, 3)
    frames, _ = _decoded(clip)
    with Segmenter.open(nhwc_onnx) as seg:
        for index, frame in enumerate(frames):
            labels = np.asarray(Image.open(out / "clip" / f"{index:06d}.labels.png"))
            assert np.array_equal(labels, seg.predict(frame)), index
    assert sorted(p.name for p in (out / "clip").iterdir())[-1] == f"{FRAMES - 1:06d}.labels.png"
    before = (out / "clip.overlay.mp4").stat().st_mtime_ns
    assert main([str(nhwc_onnx), str(clip), "-o", str(out), "-q"]) == 2  # exists: no --force
    assert "clip.overlay.mp4" in capsys.readouterr().err
    assert (out / "clip.overlay.mp4").stat().st_mtime_ns == before


def test_end_to_end_artifact_and_frame_limits(tmp_path, clip, capsys):
    wrapped, _ = make_end_to_end(segnet("NHWC"), ImageSizes.fixed(*SIZE))
    artifact = save(wrapped, tmp_path, "e2e")
    out = tmp_path / "out"
    assert main([str(artifact), str(clip), "-o", str(out), "--save-labels", "--json",
                 "--max-frames", "5"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["frames"] == 5 and len(_decoded(out / "clip.overlay.mp4")[0]) == 5
    frames, _ = _decoded(clip)
    with Segmenter.open(artifact) as seg:
        for index in range(5):
            labels = np.asarray(Image.open(out / "clip" / f"{index:06d}.labels.png"))
            assert np.array_equal(labels, seg.predict(frames[index]))
    # latest: a file read as fast as it decodes; what is dropped is counted
    assert main([str(artifact), str(clip), "-o", str(out), "--json", "--policy",
                 "latest", "--force"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["frames"] + summary["dropped"] == FRAMES and summary["policy"] == "latest"
    assert len(_decoded(out / "clip.overlay.mp4")[0]) == summary["frames"]


def test_ctrl_c_ends_a_live_source_keeping_the_video(nhwc_onnx, clip, tmp_path, capsys,
                                                    monkeypatch):
    from ocr_deploy.runtime import video_cli

    calls = {"n": 0}
    real_overlay = video_cli.overlay

    def overlay_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_overlay(*args, **kwargs)

    monkeypatch.setattr(video_cli, "overlay", overlay_then_interrupt)
    monkeypatch.setattr(video_cli, "is_live", lambda source: True)  # as a camera would be
    out = tmp_path / "out"
    assert main([str(nhwc_onnx), str(clip), "-o", str(out), "--json", "--policy",
                 "block"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["frames"] == 3 and len(_decoded(out / "clip.overlay.mp4")[0]) == 3
    monkeypatch.setattr(video_cli, "is_live", lambda source: False)  # a file: nothing kept
    calls["n"] = 0
    assert main([str(nhwc_onnx), str(clip), "-o", str(tmp_path / "file")]) == 2
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "file" / "clip.overlay.mp4").exists()


@pytest.fixture
def http_clip(clip, tmp_path, monkeypatch):
    """The clip as a streamable MPEG-TS file behind a local HTTP server: its URL."""
    av = pytest.importorskip("av")
    for proxy in ("http_proxy", "HTTP_PROXY"):  # FFmpeg would send 127.0.0.1 through it
        monkeypatch.delenv(proxy, raising=False)
    frames, _ = _decoded(clip)
    with av.open(str(tmp_path / "live.ts"), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    server.shutdown()
    thread.join()


def test_url_source(nhwc_onnx, http_clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(nhwc_onnx), http_clip, "-o", str(out), "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["policy"] == "latest"  # a URL is live: stale frames are dropped
    assert summary["frames"] + summary["dropped"] == FRAMES
    assert len(_decoded(out / "live.overlay.mp4")[0]) == summary["frames"]
    assert main([str(nhwc_onnx), http_clip, "-o", str(out), "--json", "--policy", "block",
                 "--save-labels", "--force"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)["videos"]
    assert summary["frames"] == FRAMES and summary["dropped"] == 0
    frames, _ = _decoded(out.parent / "live.ts")
    with Segmenter.open(nhwc_onnx) as seg:
        for index, frame in enumerate(frames):
            labels = np.asarray(Image.open(out / "live" / f"{index:06d}.labels.png"))
            assert np.array_equal(labels, seg.predict(frame)), index


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ocr-predict: error: "), err
    assert [line for line in err if line.startswith("ocr-predict:")] == [err[-1]]
    return err[-1]


def test_unreadable_video_is_a_one_line_error(nhwc_onnx, clip, tmp_path, capsys):
    pytest.importorskip("av")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    model, out = str(nhwc_onnx), str(tmp_path / "out")
    assert main([model, str(broken), "-o", out]) == 2
    assert "broken.mp4: expected a video FFmpeg can open" in _one_line_error(capsys)
    assert main([model, str(tmp_path / "missing.mkv"), "-o", out]) == 2
    assert "no such file" in _one_line_error(capsys)
    assert main([model, str(clip), "-o", out, "--tile", "32x32"]) == 2
    assert "still images with --tile" in _one_line_error(capsys)
    assert not (tmp_path / "out" / "broken.overlay.mp4").exists()


def test_missing_extra_is_a_one_line_error(nhwc_onnx, tmp_path, capsys, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # as without the extra
    assert main([str(nhwc_onnx), str(video), "-o", str(tmp_path / "out")]) == 2
    assert "pip install 'ocr-deploy[video]'" in _one_line_error(capsys)


def test_video_names():
    assert video_name("rtsp://cam.local:554/live/main?x=1") == "main"
    assert video_name("http://host/") == "host"
    assert video_name("/dev/video0") == "video0"
    assert video_name("clips/a.b.mp4") == "a.b"


def test_tiles_for_large_images(nhwc_onnx, nchw_onnx, tmp_path, capsys):
    rng = np.random.default_rng(1)
    image = np.repeat(np.repeat(rng.integers(0, 256, (20, 25, 3), np.uint8), 8, 0), 8, 1)
    path = tmp_path / "large.png"
    Image.fromarray(image).save(path)
    out = tmp_path / "out"
    assert main([str(nhwc_onnx), str(path), "-o", str(out), "-q", "--tile", "64x64",
                 "--tile-overlap", "16"]) == 0
    labels = np.asarray(Image.open(out / "large.labels.png"))
    with Segmenter.open(nhwc_onnx) as seg:
        assert np.array_equal(labels, seg.predict(image, tile=(64, 64), tile_overlap=16))
    assert labels.shape == image.shape[:2]
    assert main([str(nchw_onnx), str(path), "-o", str(out), "--tile", "64x64", "--force"]) == 2
    assert "labels-only artifact" in _one_line_error(capsys)
    assert main([str(nhwc_onnx), str(path), "-o", str(out), "--tile-overlap", "8"]) == 2
    assert "--tile-overlap with --tile" in _one_line_error(capsys)
