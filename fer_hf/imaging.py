"""What every image reader shares (prepare, evaluate, export samples, inference): the file
extensions read, the decompression-bomb limit, transparency flattened onto white.

Ground floor beside `labels.py`: PIL only, never another fer_hf module.
"""

from __future__ import annotations

from PIL import Image

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
)
# Pillow's own decompression-bomb threshold (~89.5 MP): larger images are refused (inference) or
# skipped (prepare) from their header, before any pixel is decoded.
MAX_PIXELS = 89_478_485
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def flatten_transparency(image: Image.Image) -> Image.Image:
    """Palette images resolved, transparent ones composited onto white (as RGB); any other image
    is returned as it is."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "TRANSPARENT_MODES", "flatten_transparency"]
