"""Annotated copies of images: a box per face with its label, score and valence/arousal.

Must not import fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from fer_hf.labels import EXPRESSIONS_8

# One colour per canonical expression (colour-blind-friendly Okabe-Ito order); others cycle.
_PALETTE = ((0, 114, 178), (230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167),
            (213, 94, 0), (240, 228, 66), (120, 120, 120))  # fmt: skip
_COLOURS = dict(zip(EXPRESSIONS_8, _PALETTE, strict=True))


def label_colour(label: str) -> tuple[int, int, int]:
    """The RGB colour used for `label` in annotated images."""
    return _COLOURS.get(label, _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)])


def annotate(image: Image.Image, faces: Sequence[dict[str, Any]]) -> Image.Image:
    """A copy of `image` (RGB) with each face's box, label and score drawn on it.

    `faces` are `FerPredictor.predict` results; `image` must be the image they were computed on.
    """
    canvas = image.convert("RGB")  # always a copy: the caller's image is never drawn on
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    line = max(2, round(min(width, height) / 200))
    font = _font(max(12, round(min(width, height) / 30)))
    for face in faces:
        x, y, w, h = face["box"]
        colour = label_colour(face["label"])
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=line)
        text = f"{face['label']} {face['scores'][face['label']]:.0%}"
        if face.get("valence") is not None:
            text += f"  V{face['valence']:+.2f} A{face['arousal']:+.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y - th - 2 * line if y - th - 2 * line >= 0 else min(y + h, height - th - 2 * line)
        tx = min(max(0, x), max(0, width - tw - 2 * line))
        draw.rectangle((tx, ty, tx + tw + 2 * line, ty + th + 2 * line), fill=colour)
        draw.text((tx + line - left, ty + line - top), text, fill=(255, 255, 255), font=font)
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError, TypeError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()
