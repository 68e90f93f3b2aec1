"""Image loading for inference: every PIL mode, EXIF orientation, size guards, clear errors."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fer_hf.inference import load_image
from fer_hf.inference.images import array_to_rgb


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("RGB", ".png"),
        ("L", ".png"),
        ("LA", ".png"),
        ("RGBA", ".png"),
        ("P", ".png"),
        ("CMYK", ".jpg"),
        ("CMYK", ".tif"),
        ("1", ".png"),
        ("I;16", ".png"),
        ("I", ".tif"),
        ("F", ".tif"),
    ],
)
def test_every_mode_loads_as_rgb(tmp_path, mode, suffix):
    source = Image.fromarray(np.full((16, 24, 3), (200, 100, 50), np.uint8)).convert(mode)
    path = tmp_path / f"img_{mode.replace(';', '_')}{suffix}"
    source.save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (24, 16)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # opens back as a 16-bit mode ("I;16" or "I")
    assert Image.open(path).mode in ("I;16", "I")
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    image = load_image(Image.fromarray(rgba))
    assert np.asarray(image).min() == 255


def test_palette_with_transparency():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    image.paste(1, (0, 0, 4, 8))
    out = np.asarray(load_image(image))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 7].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_user_image_is_not_modified():
    original = Image.new("RGBA", (10, 10), (1, 2, 3, 4))
    before = original.tobytes()
    out = load_image(original)
    assert out is not original and original.mode == "RGBA" and original.tobytes() == before


def test_bytes_input(tmp_path):
    path = tmp_path / "x.png"
    Image.new("L", (5, 7)).save(path)
    assert load_image(path.read_bytes()).size == (5, 7)


def test_too_many_pixels_is_refused(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ValueError, match="100x100 = 10,000 pixels.*decompression bombs"):
        load_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=None).size == (100, 100)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    # Rewrite IHDR to claim 30000 x 30000 pixels (the pixel data stays 8 x 8 bytes).
    ihdr = b"IHDR" + struct.pack(">II", 30_000, 30_000) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="decompression bomb"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.1, 0.6])  # cut in the header / in the pixel data
def test_truncated_file_gives_clear_error(tmp_path, suffix, keep):
    path = tmp_path / f"cut{suffix}"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_image(path)


def test_non_image_gives_clear_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(ValueError, match="not an image file"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="Cannot read an image from a int"):
        load_image(3)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((6, 5), np.uint8),
        np.zeros((6, 5, 1), np.uint8),
        np.zeros((6, 5, 3), np.uint8),
        np.zeros((6, 5, 4), np.uint8),
        np.zeros((6, 5), np.uint16),
        np.zeros((6, 5, 3), np.float32),
        np.zeros((6, 5), bool),
    ],
)
def test_arrays(array):
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (5, 6)


def test_array_errors_and_bgr():
    with pytest.raises(ValueError, match="got shape"):
        array_to_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="dtype complex"):
        array_to_rgb(np.zeros((4, 4), np.complex64))
    with pytest.raises(ValueError, match="NaN"):
        array_to_rgb(np.full((4, 4), np.nan, np.float32))
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert np.asarray(array_to_rgb(bgr, bgr=True))[0, 0].tolist() == [0, 0, 255]
