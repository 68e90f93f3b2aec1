"""Video decoding with OpenCV: every Nth frame as an RGB image with its timestamp.

Must not import fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
from PIL import Image

from .images import array_to_rgb

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class VideoFrame:
    index: int  # 0-based frame number in the file
    time_s: float  # timestamp in seconds
    image: Image.Image  # RGB


def video_info(path: str | Path) -> dict[str, float | int]:
    """`{"fps", "frame_count", "width", "height"}` of a video (the count may be an estimate)."""
    capture = _open(path)
    try:
        return {
            "fps": float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
            "frame_count": int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
    finally:
        capture.release()


def iter_video_frames(path: str | Path, frame_stride: int = 1) -> Iterator[VideoFrame]:
    """Decode `path` and yield frames 0, N, 2N, ... (skipped frames are grabbed, not decoded)."""
    if not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"`frame_stride` must be a positive int, got {frame_stride!r}.")
    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        index = 0
        while capture.grab():
            if index % frame_stride == 0:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                if fps > 0:
                    time_s = index / fps
                else:
                    time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                yield VideoFrame(index, round(time_s, 3), array_to_rgb(frame, bgr=True))
            index += 1
    finally:
        capture.release()


def _open(path: str | Path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Video file {str(path)!r} does not exist.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(
            f"OpenCV cannot decode the video {str(path)!r}; it is corrupt or in a codec this "
            "OpenCV build lacks (try converting it to H.264 MP4 or MJPEG AVI)."
        )
    return capture
