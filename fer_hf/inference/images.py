"""Image loading for inference: any PIL mode, EXIF orientation, size guards, clear errors.

Must not import fer_hf.data, training, hub or cli (inference sits above them only through models).
"""

from __future__ import annotations

import errno
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..imaging import MAX_PIXELS as DEFAULT_MAX_PIXELS
from ..imaging import flatten_transparency

# Pillow's global limit is switched off while a header is read (fer-hf checks the size itself,
# with the caller's limit); the lock keeps two threads from restoring each other's value.
_PILLOW_LIMIT_LOCK = threading.Lock()

ImageInput = str | Path | bytes | Image.Image | np.ndarray


class ImageTooLargeError(ValueError):
    """An image over a byte or pixel limit, refused before decoding. `limit` is the limit it
    exceeded, `size` the file's bytes or (width, height); callers word their own advice."""

    def __init__(self, message: str, what: str, size: int | tuple[int, int], limit: int):
        super().__init__(message)
        self.what, self.size, self.limit = what, size, limit


def load_image(
    source: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
) -> Image.Image:
    """Open `source` as an RGB `PIL.Image`, honouring EXIF orientation.

    Accepts a path, encoded bytes, a `PIL.Image` (any mode; never modified) or a numpy array
    (`(H, W)`, `(H, W, 1|3|4)`, RGB(A) channel order, uint8/uint16 or float in [0, 1]).
    Files and bytes over `max_bytes` and images with more than `max_pixels` pixels are refused
    before decoding (`ImageTooLargeError`; decompression-bomb guard; `None` disables a check).
    Raises `FileNotFoundError`, `ValueError` (empty, not an image, truncated/corrupt, too large,
    a folder or a broken link) or `TypeError` (unsupported input type).
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, "image")
        return to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, bytes | bytearray):
        _check_bytes(len(source), max_bytes, "image bytes")
        return _open(io.BytesIO(source), "image bytes", max_pixels)
    if isinstance(source, str | Path):
        path = Path(source)
        what = repr(str(path))
        if path.is_symlink() and not path.exists():
            raise ValueError(f"{what} is {broken_link_reason(path)}.")
        if not path.exists():
            raise FileNotFoundError(f"Image file {what} does not exist.")
        if path.is_dir():
            raise ValueError(f"{what} is a folder; expected an image file.")
        _check_bytes(path.stat().st_size, max_bytes, what)
        with path.open("rb") as handle:
            return _open(handle, what, max_pixels)
    raise TypeError(
        f"Cannot read an image from a {type(source).__name__}; expected a path, bytes, "
        "a PIL.Image or a numpy array."
    )


def broken_link_reason(path: Path) -> str:
    """Why the link `path` resolves nowhere: a loop, or a dangling link (naming its target)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself)"
    return f"a dangling symbolic link (its target {os.readlink(path)!r} does not exist)"


def _check_bytes(size: int, max_bytes: int | None, what: str) -> None:
    if size == 0:
        raise ValueError(f"{what} is an empty file (0 bytes); expected an image file.")
    if max_bytes is not None and size > max_bytes:
        raise ImageTooLargeError(
            f"{what} is {size:,} bytes, more than the {max_bytes:,}-byte limit; it was not "
            "decoded.",
            what,
            size,
            max_bytes,
        )


def _open(stream: io.IOBase, what: str, max_pixels: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings(), _PILLOW_LIMIT_LOCK:
            # The size is checked explicitly below, against the caller's limit, with a message
            # that names the file; Pillow's own limits would refuse `max_pixels=None` too.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(stream)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError:
        if stream.seek(0, io.SEEK_END) == 0:
            raise ValueError(f"{what} is an empty file (0 bytes); expected an image.") from None
        raise ValueError(
            f"{what} is not an image file that Pillow can read (supported: JPEG, PNG, BMP, GIF, "
            "TIFF, WebP, ...)."
        ) from None
    except Exception as err:  # noqa: BLE001 - Pillow's parsers raise many kinds on bad data
        raise _corrupt(what, err) from None
    _check_size(image.size, max_pixels, what)
    try:
        image.load()
    except Exception as err:  # noqa: BLE001 - likewise its decoders
        raise _corrupt(what, err) from None
    return to_rgb(ImageOps.exif_transpose(image))


def _corrupt(what: str, err: Exception) -> ValueError:
    return ValueError(
        f"{what} is truncated or corrupt and cannot be decoded ({err}); re-export or "
        "re-download it."
    )


def _check_size(size: tuple[int, int], max_pixels: int | None, what: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} has an empty size {width}x{height}.")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,}-pixel limit that guards against decompression bombs; it was not "
            "decoded. Downscale it, or raise the limit if you trust the file (max_pixels=N or "
            "None; CLI: --max-pixels N, 0 for no limit).",
            what,
            (width, height),
            max_pixels,
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited onto white, 16/32-bit scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = _to_uint8(np.asarray(image), sixteen_bit=image.mode.startswith("I;16"))
        return Image.fromarray(values).convert("RGB")
    # Palette and transparent images onto white; then CMYK (Pillow undoes Adobe's inverted
    # CMYK), YCbCr, LAB, HSV, L, 1, RGBX ... converted by Pillow.
    return flatten_transparency(image).convert("RGB")


def _to_uint8(values: np.ndarray, *, sixteen_bit: bool = False) -> np.ndarray:
    """8-bit values from 16/32-bit integers or floats (in [0, 1], else clipped to [0, 255])."""
    if values.dtype == np.uint8:
        return values
    is_float = values.dtype.kind == "f"
    sixteen_bit = sixteen_bit or values.dtype == np.uint16
    values = values.astype(np.float64)
    if not values.size:
        return values.astype(np.uint8)
    if is_float:
        if values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
    elif sixteen_bit or values.max() > 255.0:  # a 16-bit PNG opens as mode "I"
        values = values / 257.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def array_to_rgb(array: np.ndarray, *, bgr: bool = False) -> Image.Image:
    """An RGB `PIL.Image` from a numpy array (`bgr=True` for OpenCV frames). Copies the data."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"Expected a numpy array, got {type(array).__name__}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            "Image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {array.shape}."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"Image array is empty (shape {array.shape}).")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("Image array contains NaN or infinite values.")
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype.kind in "ui":
        array = _to_uint8(array)
    else:
        raise TypeError(f"Image arrays must be uint8, uint16 or float; got dtype {array.dtype}.")
    if array.ndim == 3 and bgr:
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))  # L, RGB or RGBA from the shape
