"""Images in and out: 16-bit PNGs scaled (not saturated), decompression bombs refused with
their pixel count (exit 2), overlays rendered without full-size float copies."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from ocr_deploy.errors import EXIT_BAD_INPUT, BadInputError
from ocr_deploy.images import read_image
from ocr_deploy.runtime.predict_cli import main as predict_main
from ocr_deploy.runtime.render import fallback_palette, overlay


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares ``width x height`` 8-bit RGB pixels (a decompression bomb's
    header: Pillow reads the size before any pixel data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_16_bit_greyscale_png_is_scaled_not_saturated(tmp_path):
    levels = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    image = read_image(tmp_path / "grey16.png")
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], np.arange(256).reshape(16, 16))
    assert (image[..., 0] == image[..., 2]).all()
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "dark.png")
    assert (read_image(tmp_path / "dark.png") == 4).all()  # 1000 / 257, not 255


def test_decompression_bombs_are_refused_with_their_pixel_count(tmp_path, monkeypatch):
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(BadInputError, match=r"bomb\.png: expected an image of at most "
                       r"89,478,485 pixels .*found 400,000,000 pixels") as info:
        read_image(tmp_path / "bomb.png")
    assert info.value.exit_code == EXIT_BAD_INPUT
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 px: over the limit, below 2x
    with pytest.raises(BadInputError, match=r"at most 1,000 pixels .*found 1,600 pixels"):
        read_image(tmp_path / "big.png")


def test_ocr_predict_exits_2_on_a_bomb(tmp_path, nhwc_onnx, capsys):
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    code = predict_main([str(nhwc_onnx), str(tmp_path / "bomb.png"),
                         "-o", str(tmp_path / "out"), "-q"])
    assert code == EXIT_BAD_INPUT
    assert "found 900,000,000 pixels" in capsys.readouterr().err


def test_overlay_is_rendered_without_full_size_float_copies():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2000, 1500, 3), dtype=np.uint8)
    labels = rng.integers(0, 6, (2000, 1500), dtype=np.uint8)
    palette = fallback_palette(5)  # label 5 is clipped to the last colour
    tracemalloc.start()
    try:
        picture = overlay(image, labels, palette, alpha=0.3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * image.nbytes  # a float32 copy alone would be 4x
    colors = palette[np.clip(labels, 0, 4)].astype(np.float64)
    expected = np.rint(0.7 * image.astype(np.float64) + 0.3 * colors)
    assert np.abs(np.asarray(picture).astype(int) - expected).max() <= 1
