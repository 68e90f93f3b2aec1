"""Image loading for inference: any PIL mode, EXIF orientation, size guards, clear errors.

Must not import fer_hf.data, training, hub or cli (inference sits above them only through models).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL's own decompression-bomb threshold (~89.5 MP). Larger images are refused before decoding.
DEFAULT_MAX_PIXELS = 89_478_485

ImageInput = str | Path | bytes | Image.Image | np.ndarray


def load_image(source: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open `source` as an RGB `PIL.Image`, honouring EXIF orientation.

    Accepts a path, encoded bytes, a `PIL.Image` (any mode; never modified) or a numpy array
    (`(H, W)`, `(H, W, 1|3|4)`, RGB(A) channel order, uint8/uint16 or float in [0, 1]).
    Images with more than `max_pixels` pixels are refused (decompression-bomb guard; pass
    `max_pixels=None` to trust the input). Raises `FileNotFoundError`, `ValueError` (not an
    image, truncated/corrupt, too large) or `TypeError` (unsupported input type).
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, "image")
        return to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, bytes | bytearray):
        return _open(io.BytesIO(source), "image bytes", max_pixels)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"Image file {str(path)!r} does not exist.")
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder; expected an image file.")
        with path.open("rb") as handle:
            return _open(handle, repr(str(path)), max_pixels)
    raise TypeError(
        f"Cannot read an image from a {type(source).__name__}; expected a path, bytes, "
        "a PIL.Image or a numpy array."
    )


def _open(stream: io.IOBase, what: str, max_pixels: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # The size is checked explicitly below, with a message that names the file.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"{what} is refused as a possible decompression bomb ({err}). "
            "Downscale it first, or pass max_pixels=None if you trust it."
        ) from None
    except UnidentifiedImageError:
        raise ValueError(
            f"{what} is not an image file that Pillow can read (supported: JPEG, PNG, BMP, GIF, "
            "TIFF, WebP, ...)."
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise _corrupt(what, err) from None
    _check_size(image.size, max_pixels, what)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
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
        raise ValueError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the "
            f"{max_pixels:,}-pixel limit that guards against decompression bombs. Downscale it "
            "first, or pass max_pixels=None (CLI: --max-pixels 0) if you trust the file."
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited onto white, 16/32-bit scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = _to_uint8(np.asarray(image), sixteen_bit=image.mode.startswith("I;16"))
        return Image.fromarray(values).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, LAB, HSV, L, 1, RGBX ...
    return image.convert("RGB")


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
