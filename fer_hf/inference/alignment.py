"""Face alignment: rotate each face upright by its eye keypoints before classification.

Must not import torch, transformers, fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .detection import Box

MAX_CROP_SIDE = 512  # crops are resampled to at most this side (the model input is far smaller)


def eye_roll(right_eye, left_eye) -> float:
    """Angle of the eye line in degrees, from the person's right eye (image left) to the left eye.

    Positive when the left eye sits lower in the image (y grows downwards), i.e. the head is
    rolled clockwise on screen.
    """
    return math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))


def aligned_crop(image: np.ndarray, box: Box, roll: float, margin: float) -> np.ndarray:
    """The square face crop around `box`, rotated by `-roll` degrees so the eyes are level.

    The crop has the framing of `expand_box` (the box's longer side grown by `margin` on every
    side, same centre), sampled along the rotated axes; parts outside the image repeat its edge
    pixels. `image` is an `(H, W, C)` uint8 array; returns `(S, S, C)` with S the crop's side in
    image pixels (at most MAX_CROP_SIDE).
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    out = max(1, min(MAX_CROP_SIDE, round(side)))
    step = side / out  # image pixels per crop pixel
    cx, cy = x + w / 2.0, y + h / 2.0
    cos, sin = math.cos(math.radians(roll)) * step, math.sin(math.radians(roll)) * step
    half = out / 2.0
    # crop pixel (u, v) -> image point: centre + R(roll) @ ((u, v) - half) * step
    matrix = np.array(
        [[cos, -sin, cx - (cos - sin) * half], [sin, cos, cy - (sin + cos) * half]], np.float64
    )
    # Pixel centres: OpenCV samples crop pixel u at u, so shift by half a pixel on both sides.
    matrix[:, 2] += (matrix[:, 0] + matrix[:, 1]) * 0.5 - 0.5
    return cv2.warpAffine(
        image,
        matrix,
        (out, out),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
