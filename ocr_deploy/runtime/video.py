"""Video in and out through PyAV (the ``video`` extra: ``pip install 'ocr-deploy[video]'``):
files, URLs FFmpeg opens (``rtsp://``, ``http://``) and cameras (``/dev/video0``) decoded to
uint8 RGB frames; overlays encoded as H.264 MP4. PyAV's wheels bundle FFmpeg, so nothing
else needs installing (docs/install.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ocr_deploy.errors import BadInputError
from ocr_deploy.files import atomic_output

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts")
CAMERA_PREFIX = "/dev/video"
DEFAULT_FPS = Fraction(25)  # for sources that do not say their frame rate
# H.264 at a near-transparent constant quality; "veryfast" halves the encoding time of
# x264's default preset (640x480 on the development machine: 9.4 ms a frame, not 20)
CODEC, OPTIONS = "libx264", {"crf": "18", "preset": "veryfast"}


def is_live(source: str) -> bool:
    """A URL or a camera: frames arrive at their own pace and may be dropped."""
    return "://" in source or source.startswith(CAMERA_PREFIX)


def is_video(source: str) -> bool:
    """A video file (by its suffix), a URL or a camera."""
    return is_live(source) or Path(source).suffix.lower() in VIDEO_SUFFIXES


def video_name(source: str) -> str:
    """The name outputs of ``source`` take: the file's stem, a URL's last path part (or
    its host), a camera's device name."""
    if "://" in source:
        rest = source.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        return Path(rest).stem or "stream"
    return Path(source).stem


def import_av():
    """PyAV, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise BadInputError(None, "PyAV to read and write video", "it is not installed",
                            "pip install 'ocr-deploy[video]'") from None
    return av


class VideoReader:
    """One video source: ``fps``, ``frames`` (0 when unknown), ``size`` ``(H, W)``;
    iterating gives its frames as uint8 RGB ``[H,W,3]``, at most ``max_frames``."""

    def __init__(self, source: str, max_frames: int | None = None):
        av = import_av()
        self.source, self.max_frames = source, max_frames
        camera = source.startswith(CAMERA_PREFIX)
        try:
            self._container = av.open(source, format="v4l2" if camera else None,
                                      timeout=(10.0, 10.0) if is_live(source) else None)
        except (av.FFmpegError, OSError) as exc:
            raise BadInputError(source, "a video FFmpeg can open (a file, an rtsp:// or "
                                "http:// URL, a camera)", _reason(exc),
                                "check the path, URL or device") from None
        if not self._container.streams.video:
            self._container.close()
            raise BadInputError(source, "a video stream", "none in the container",
                                "give a file with video")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's own decoding threads
        self._stream = stream
        self.fps = Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        self.frames = int(stream.frames or 0)
        self.size = (stream.height, stream.width)

    def __iter__(self) -> Iterator[np.ndarray]:
        av = import_av()
        count = 0
        try:
            for frame in self._container.decode(self._stream):
                if self.max_frames is not None and count >= self.max_frames:
                    return
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.FFmpegError as exc:
            raise BadInputError(self.source, "readable video data",
                                f"{_reason(exc)} after {count} frames",
                                "check the file or the connection") from None
        finally:
            self.close()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def video_writer(path: Path, fps: Fraction):
    """Yield ``write(index, rgb)``: frame ``index`` (its time is ``index / fps``; frames
    left out leave a gap) of an H.264 MP4 at ``path``, written to a temporary file renamed
    into place when the block ends without error. Odd sizes are kept (4:4:4 chroma)."""
    av = import_av()
    with atomic_output(path) as tmp:
        # faststart: the index at the front, so the file plays while it downloads
        container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        state: dict = {}

        def write(index: int, rgb: np.ndarray) -> None:
            if "stream" not in state:
                height, width = rgb.shape[:2]
                stream = container.add_stream(CODEC, rate=fps)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 \
                    else "yuv444p"
                stream.options = dict(OPTIONS)
                state["stream"] = stream
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index
            container.mux(state["stream"].encode(frame))

        try:
            yield write
            if "stream" not in state:
                raise BadInputError(path, "at least one frame to write", "none",
                                    "check that the source gives frames")
            container.mux(state["stream"].encode(None))  # flush the encoder
        finally:
            container.close()


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__} ({' '.join(str(text).split())[:160]})"
