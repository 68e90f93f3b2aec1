"""`fer-hf predict` on files: images, folders and videos -> JSONL/CSV records and annotated copies.

Unreadable inputs are reported and skipped, never fatal. Must not import fer_hf.data, training,
hub or cli.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from .drawing import annotate
from .images import load_image
from .predictor import FerPredictor
from .video import VIDEO_EXTENSIONS, iter_video_frames, video_info

IMAGE_EXTENSIONS = (
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
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
_KEEP_SUFFIX = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def collect_inputs(inputs: Iterable[str | Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """`(file, name for annotated copies)` for every image/video in `inputs`, and missing paths.

    Folders are searched recursively for known image and video extensions; a file named
    directly is always tried, whatever its extension.
    """
    found, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
                    found.append((file, Path(path.name) / file.relative_to(path)))
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            missing.append(f"{item}: no such file or folder")
    return found, missing


def predict_files(
    predictor: FerPredictor,
    inputs: Iterable[str | Path],
    output: str | Path | None = None,
    annotate_dir: str | Path | None = None,
    frame_stride: int = 1,
    detect_faces: bool = True,
    stdout: IO[str] | None = None,
) -> dict[str, Any]:
    """Run `predictor` on images, folders and videos; stream records to `output` (or stdout).

    Records are one per image or video frame: `{"file", "frame", "time_s", "faces": [...]}` in
    JSONL, or one CSV row per face (an image without faces still gets a row, face fields empty).
    `annotate_dir` receives copies with boxes and labels (videos as `<name>.annotated.mp4` of
    the processed frames). Returns a summary with the skipped inputs and their reasons.
    """
    if not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"`frame_stride` must be a positive int, got {frame_stride!r}.")
    fmt = "jsonl"
    if output is not None:
        fmt = OUTPUT_FORMATS.get(Path(output).suffix.lower())
        if fmt is None:
            raise ValueError(
                f"Unknown output format {Path(output).suffix!r} for {str(output)!r}; use a "
                f"file ending in one of {sorted(OUTPUT_FORMATS)}."
            )
    files, skipped = collect_inputs(inputs)
    if annotate_dir is not None:
        annotate_dir = Path(annotate_dir)
        annotate_dir.mkdir(parents=True, exist_ok=True)
    summary = {"images": 0, "videos": 0, "frames": 0, "faces": 0}
    handle = (stdout or sys.stdout) if output is None else open(output, "w", newline="")
    try:
        write = _writer(handle, fmt, predictor.labels)
        for path, name in tqdm(files, desc="predict", unit="file", disable=len(files) < 2):
            is_video = path.suffix.lower() in VIDEO_EXTENSIONS
            try:
                if is_video:
                    records = _video(
                        predictor, path, name, annotate_dir, frame_stride, detect_faces
                    )
                else:
                    records = [_image(predictor, path, name, annotate_dir, detect_faces)]
                for record in records:
                    write(record)
                    summary["frames"] += record["frame"] is not None
                    summary["faces"] += len(record["faces"])
            except (ValueError, FileNotFoundError, OSError) as err:
                skipped.append(f"{path}: {err}")
                continue
            summary["videos" if is_video else "images"] += 1
    finally:
        if output is not None:
            handle.close()
    return {**summary, "skipped": skipped, "output": str(output) if output else None}


def _image(predictor, path: Path, name: Path, annotate_dir, detect_faces) -> dict[str, Any]:
    image = load_image(path, max_pixels=predictor.max_pixels)
    faces = predictor.predict(image, detect_faces=detect_faces)
    if annotate_dir is not None:
        suffix = name.suffix.lower() if name.suffix.lower() in _KEEP_SUFFIX else ".png"
        target = annotate_dir / name.with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        annotate(image, faces).save(target)
    return {"file": str(path), "frame": None, "time_s": None, "faces": faces}


def _video(predictor, path, name, annotate_dir, frame_stride, detect_faces) -> Iterator[dict]:
    info = video_info(path)
    writer = None
    try:
        frames = iter_video_frames(path, frame_stride=frame_stride)
        total = -(-info["frame_count"] // frame_stride) if info["frame_count"] > 0 else None
        for frame in tqdm(frames, desc=path.name, unit="frame", total=total, leave=False):
            faces = predictor.predict(frame.image, detect_faces=detect_faces)
            if annotate_dir is not None:
                if writer is None:
                    writer = _video_writer(annotate_dir, name, info, frame_stride, frame.image.size)
                drawn = np.asarray(annotate(frame.image, faces))
                writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            yield {"file": str(path), "frame": frame.index, "time_s": frame.time_s, "faces": faces}
    finally:
        if writer is not None:
            writer.release()


def _video_writer(annotate_dir: Path, name: Path, info, frame_stride: int, size) -> cv2.VideoWriter:
    target = annotate_dir / name.with_name(f"{name.stem}.annotated.mp4")
    target.parent.mkdir(parents=True, exist_ok=True)
    fps = max(1.0, (info["fps"] or 25.0) / frame_stride)
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write the annotated video {str(target)!r} (mp4v codec).")
    return writer


def _writer(handle: IO[str], fmt: str, labels: list[str]):
    if fmt == "jsonl":

        def write_jsonl(record: dict[str, Any]) -> None:
            handle.write(json.dumps(record) + "\n")

        return write_jsonl

    fields = ["file", "frame", "time_s", "face", "x", "y", "w", "h", "label", "score"]
    fields += ["valence", "arousal", *(f"p_{label}" for label in labels)]
    rows = csv.DictWriter(handle, fieldnames=fields)
    rows.writeheader()

    def write_csv(record: dict[str, Any]) -> None:
        base = {"file": record["file"], "frame": record["frame"], "time_s": record["time_s"]}
        if not record["faces"]:
            rows.writerow(base)
        for i, face in enumerate(record["faces"]):
            x, y, w, h = face["box"]
            row = {**base, "face": i, "x": x, "y": y, "w": w, "h": h, "label": face["label"]}
            row["score"] = f"{face['scores'][face['label']]:.6f}"
            row["valence"], row["arousal"] = face["valence"], face["arousal"]
            row.update({f"p_{k}": f"{v:.6f}" for k, v in face["scores"].items()})
            rows.writerow(row)

    return write_csv
