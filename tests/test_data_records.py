"""`encode_image`, the one image reader of the data layer: odd images stored right, bad ones
skipped with their reason (never an exception that ends a build)."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fer_hf.data.records import MAX_PIXELS, ImageInput, Options, SkipRecord, encode_image

OPTIONS = Options(data_dir="/", class_names=("a", "b"))


def stored(path) -> Image.Image:
    return Image.open(io.BytesIO(encode_image(ImageInput(path=str(path)), OPTIONS)["bytes"]))


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 64), (8, 1))
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "16.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "f.tiff")
    for name in ("16.png", "f.tiff"):
        values = np.asarray(stored(tmp_path / name))
        # Pillow's own conversion clips: 16-bit to nearly all white, [0, 1] floats to black.
        assert values.min() == 0 and values.max() == 255, name
        assert abs(values.mean() - 127.5) < 2, name


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent dark pixels
    rgba.save(tmp_path / "t.png")
    assert stored(tmp_path / "t.png").convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "r.jpg", exif=exif)
    assert stored(tmp_path / "r.jpg").size == (20, 40)
    with_box = ImageInput(path=str(tmp_path / "r.jpg"), box=(0, 0, 40, 20))  # refers to storage
    assert Image.open(io.BytesIO(encode_image(with_box, OPTIONS)["bytes"])).size == (40, 20)


def _bomb(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), r"^empty file \(0 bytes\)$"),
        (lambda p: p.write_text("hello"), r"^not an image \(unrecognised format\)$"),
        # Twice Pillow's limit and more: Pillow raised DecompressionBombError, which ended the
        # whole `prepare`/`evaluate` run.
        (lambda p: p.write_bytes(_bomb(20_000, 20_000)),
         rf"^image is 20000x20000 = 400,000,000 pixels, more than the {MAX_PIXELS:,}-pixel limit"),
        # Between Pillow's limit and twice it: Pillow only warned and decoded it.
        (lambda p: p.write_bytes(_bomb(10_000, 9_000)), r"^image is 10000x9000 = 90,000,000"),
        (lambda p: os.symlink(p.name, p), r"^symbolic link loop"),
        (lambda p: os.symlink("elsewhere.png", p), r"^dangling symbolic link \(target 'elsewhere"),
        (lambda p: p.mkdir(), r"^is a folder, not an image file$"),
    ],
    ids=["empty", "text", "bomb-2x", "bomb-1x", "loop", "dangling", "folder"],
)  # fmt: skip
def test_bad_files_are_skip_records_with_their_reason(make, reason, tmp_path):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(SkipRecord, match=reason):
        encode_image(ImageInput(path=str(path)), OPTIONS)
