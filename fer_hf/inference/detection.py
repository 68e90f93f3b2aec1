"""Offline face detection: a small detector interface and OpenCV's bundled Haar cascades.

Must not import fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels


@runtime_checkable
class FaceDetector(Protocol):
    """What `FerPredictor(detector=...)` accepts: the Haar cascades below, or a DNN detector."""

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes `(x, y, w, h)` in pixels of `image`, an `(H, W, 3)` uint8 RGB array."""
        ...


class HaarCascadeDetector:
    """OpenCV's Haar cascades (shipped with opencv-python-headless): frontal, then profile.

    Args:
        max_side (`int | None`, defaults to 640): the image is downscaled so its longer side is at
            most this many pixels before detection (speed, and huge photos); boxes are mapped back.
            `None` detects at full resolution.
        min_size (`int`, defaults to 24): smallest face, in pixels of the downscaled image.
        scale_factor (`float`, defaults to 1.1): image-pyramid step; larger is faster, misses more.
        min_neighbors (`int`, defaults to 5): overlapping hits needed to keep a face; higher means
            fewer false positives.
        profile (`str`, defaults to "always"): the second pass with the profile cascade, run on the
            image and on its mirror (the cascade knows one side only), keeps faces the frontal pass
            missed. "always", "fallback" (only when the frontal pass finds nothing; about 4x
            cheaper on video) or "never".
        cascade_dir (`str | Path | None`): folder holding the cascade XML files; defaults to
            `cv2.data.haarcascades`.
    """

    FRONTAL = "haarcascade_frontalface_default.xml"
    PROFILE = "haarcascade_profileface.xml"
    PROFILE_MODES = ("always", "fallback", "never")

    def __init__(
        self,
        max_side: int | None = 640,
        min_size: int = 24,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        profile: str = "always",
        cascade_dir: str | Path | None = None,
    ):
        if max_side is not None and (not isinstance(max_side, int) or max_side < 32):
            raise ValueError(f"`max_side` must be an int >= 32 or None, got {max_side!r}.")
        if not isinstance(min_size, int) or min_size < 8:
            raise ValueError(f"`min_size` must be an int >= 8 pixels, got {min_size!r}.")
        if not scale_factor > 1.0:
            raise ValueError(f"`scale_factor` must be > 1.0 (e.g. 1.1), got {scale_factor!r}.")
        if not isinstance(min_neighbors, int) or min_neighbors < 0:
            raise ValueError(f"`min_neighbors` must be an int >= 0, got {min_neighbors!r}.")
        if profile not in self.PROFILE_MODES:
            raise ValueError(f"`profile` must be one of {self.PROFILE_MODES}, got {profile!r}.")
        self.max_side = max_side
        self.min_size = min_size
        self.scale_factor = float(scale_factor)
        self.min_neighbors = min_neighbors
        self.profile = profile
        folder = Path(cascade_dir if cascade_dir is not None else cv2.data.haarcascades)
        self._frontal = _load_cascade(folder / self.FRONTAL)
        self._profile = _load_cascade(folder / self.PROFILE) if profile != "never" else None

    @classmethod
    def for_video(cls, **overrides) -> HaarCascadeDetector:
        """Settings for webcam-style frames (one or a few large faces): ~8 ms on a 640x480 frame."""
        settings = dict(max_side=320, min_size=40, scale_factor=1.2, profile="fallback")
        return cls(**{**settings, **overrides})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_side={self.max_side}, min_size={self.min_size}, "
            f"scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
            f"profile={self.profile!r})"
        )

    def detect(self, image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        scale = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        gray = cv2.equalizeHist(gray)

        boxes = self._run(self._frontal, gray)
        if self._profile is not None and (self.profile == "always" or not boxes):
            gray_width = gray.shape[1]
            profiles = self._run(self._profile, gray)
            mirrored = self._run(self._profile, np.ascontiguousarray(gray[:, ::-1]))
            profiles += [(gray_width - x - w, y, w, h) for x, y, w, h in mirrored]
            for candidate in sorted(profiles, key=lambda b: -b[2] * b[3]):
                if all(_overlap(candidate, kept) < 0.3 for kept in boxes):
                    boxes.append(candidate)

        boxes = [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in boxes
        ]
        return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray) -> list[Box]:
        found = cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [tuple(int(v) for v in box) for box in found]


def _load_cascade(path: Path) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FileNotFoundError(
            f"Could not load the Haar cascade {str(path)!r}; it ships with "
            "opencv-python-headless (cv2.data.haarcascades). Reinstall it or pass `cascade_dir`."
        )
    return cascade


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: 1.0 when one box sits inside the other."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return ix * iy / smaller if smaller else 0.0


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow `box` to a square `margin` x its size larger on every side, clamped to the image."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = max(0, round(cx - side / 2.0)), max(0, round(cy - side / 2.0))
    x1, y1 = min(width, round(cx + side / 2.0)), min(height, round(cy + side / 2.0))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))
