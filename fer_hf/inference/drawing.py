"""Annotated copies of images: a box per face with its label, score and valence/arousal.

Labels are sized to their face (not the image), placed where they cover no other face or label
when there is such a place, and written in black or white, whichever contrasts more with the
label colour. Must not import fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from fer_hf.labels import EXPRESSIONS_8

# One colour per canonical expression (colour-blind-friendly Okabe-Ito order); others cycle.
_PALETTE = ((0, 114, 178), (230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167),
            (213, 94, 0), (240, 228, 66), (120, 120, 120))  # fmt: skip
_COLOURS = dict(zip(EXPRESSIONS_8, _PALETTE, strict=True))
MIN_FONT, MAX_FONT = 9, 48  # px; a label is about as wide as its face within these bounds

Rect = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive


def label_colour(label: str) -> tuple[int, int, int]:
    """The RGB colour used for `label` in annotated images."""
    return _COLOURS.get(label, _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)])


def _luminance(rgb: Sequence[int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    linear = [c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (1 to 21; body text wants at least 4.5)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_colour(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with `background`."""
    black, white = (0, 0, 0), (255, 255, 255)
    return max((black, white), key=lambda c: contrast_ratio(c, background))


@dataclass(frozen=True)
class Label:
    """Where one face's label goes: its text, font size and background rectangle."""

    text: str
    font_size: int
    rect: Rect


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _face_text(face: dict[str, Any]) -> str:
    text = f"{face['label']} {face['scores'][face['label']]:.0%}"
    if face.get("valence") is not None:
        text += f"  V{face['valence']:+.2f} A{face['arousal']:+.2f}"
    return text


def layout_labels(faces: Sequence[dict[str, Any]], size: tuple[int, int]) -> list[Label]:
    """One `Label` per face for an image of `size`: the font fits the text to about the face's
    width; the label sits above the box, else inside its top edge, else below it, taking the
    first place that stays in the image and covers no other face and no label placed before."""
    width, height = size
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [_box_rect(face) for face in faces]
    placed: list[Rect] = []
    labels = []
    for i, face in enumerate(faces):
        x, y, w, h = (round(v) for v in face["box"])
        text = _face_text(face)
        font_size = max(MIN_FONT, min(MAX_FONT, round(w / 4)))
        while True:  # shrink until the text is no wider than the face (or the minimum size)
            left, top, right, bottom = measure.textbbox((0, 0), text, font=_font(font_size))
            pad = max(1, font_size // 6)
            tw, th = right - left + 2 * pad, bottom - top + 2 * pad
            if tw <= max(w, 1) or font_size <= MIN_FONT:
                break
            font_size -= 1
        tx = min(max(0, x), max(0, width - tw))
        candidates = [(tx, y - th), (tx, y), (tx, y + h)]  # above, inside the top, below
        others = [b for j, b in enumerate(boxes) if j != i] + placed
        chosen = None
        for cx, cy in candidates:
            rect = (cx, cy, cx + tw, cy + th)
            inside = cy >= 0 and cy + th <= height
            if inside and not any(_overlap(rect, other) for other in others):
                chosen = rect
                break
        if chosen is None:  # crowded: inside the face's own box, clamped to the image
            cy = min(max(0, y), max(0, height - th))
            chosen = (tx, cy, tx + tw, cy + th)
        placed.append(chosen)
        labels.append(Label(text, font_size, chosen))
    return labels


def _box_rect(face: dict[str, Any]) -> Rect:
    x, y, w, h = (round(v) for v in face["box"])
    return (x, y, x + w, y + h)


def annotate(image: Image.Image, faces: Sequence[dict[str, Any]]) -> Image.Image:
    """A copy of `image` (RGB) with each face's box, label and score drawn on it.

    `faces` are `FerPredictor.predict` results; `image` must be the image they were computed on.
    """
    canvas = image.convert("RGB")  # always a copy: the caller's image is never drawn on
    draw = ImageDraw.Draw(canvas)
    labels = layout_labels(faces, canvas.size)
    for face in faces:  # all boxes first, so no box is drawn over another face's label
        x, y, w, h = (round(v) for v in face["box"])
        line = max(1, round(min(w, h) / 50))
        draw.rectangle(
            (x, y, x + w - 1, y + h - 1), outline=label_colour(face["label"]), width=line
        )
    for face, label in zip(faces, labels, strict=True):
        colour = label_colour(face["label"])
        left, top, right, bottom = label.rect
        draw.rectangle((left, top, right - 1, bottom - 1), fill=colour)
        font = _font(label.font_size)
        box_left, box_top, _, _ = draw.textbbox((0, 0), label.text, font=font)
        pad = max(1, label.font_size // 6)
        draw.text(
            (left + pad - box_left, top + pad - box_top),
            label.text,
            fill=text_colour(colour),
            font=font,
        )
    return canvas


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError, TypeError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()
