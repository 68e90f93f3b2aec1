"""`fer-hf predict` on files: images, folders and videos -> JSONL/JSON/CSV records and annotated
copies.

Unreadable inputs are reported and skipped, never fatal; every input is counted in the summary.
Must not import fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..imaging import IMAGE_EXTENSIONS
from .drawing import annotate
from .images import broken_link_reason, load_image
from .predictor import FerPredictor
from .video import VIDEO_EXTENSIONS, iter_video_frames, video_info

# Results file suffix -> format: JSON Lines, one JSON array, or one CSV row per face.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}
_KEEP_SUFFIX = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Inputs:
    """What `collect_inputs` found: files to read (with their names for annotated copies),
    inputs that cannot be read (`failed`: "path: reason") and folder entries left alone because
    they are not images or videos (`ignored`: "path: reason")."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def collect_inputs(inputs: Iterable[str | Path]) -> Inputs:
    """Every image/video in `inputs`, and every input or folder entry that will not be read.

    Folders are searched recursively (links to folders are not followed, as in `os.walk`). A
    folder entry with another extension is ignored and listed; a broken link, or a folder named
    like an image, is listed too. A file named directly is always tried, whatever its extension.
    """
    found = Inputs()
    for item in inputs:
        path = Path(item)
        if path.is_symlink() and not path.exists():
            found.failed.append(f"{item}: {broken_link_reason(path)}")
        elif path.is_dir():
            count = len(found.files)
            _walk(path, found)
            if len(found.files) == count:
                found.failed.append(f"{item}: folder holds no image or video files")
        elif path.is_file():
            found.files.append((path, Path(path.name)))
        else:
            found.failed.append(f"{item}: no such file or folder")
    return found


def _walk(root: Path, found: Inputs) -> None:
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    for file in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in file.relative_to(root).parts):
            continue  # hidden files and folders (.DS_Store, .git) are not inputs
        suffix = file.suffix.lower()
        if file.is_symlink() and not file.exists():
            found.failed.append(f"{file}: {broken_link_reason(file)}")
        elif file.is_dir() and file.is_symlink():
            found.ignored.append(f"{file}: symbolic link to a folder (not followed)")
        elif file.is_dir():
            if suffix in known:
                reason = "is a folder, not an image file (its files are read)"
                found.ignored.append(f"{file}: {reason}")
        elif suffix not in known:
            reason = f"not an image or video file (extension {suffix or 'none'!r})"
            found.ignored.append(f"{file}: {reason}")
        elif file.is_file():
            found.files.append((file, Path(root.name) / file.relative_to(root)))
        else:
            found.ignored.append(f"{file}: not a regular file")


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

    Records are one per image or video frame: `{"file", "frame", "time_s", "faces": [...]}`, as
    JSON Lines (`.jsonl`, and stdout), one JSON array (`.json`), or one CSV row per face (`.csv`;
    an image without faces still gets a row, face fields empty). `annotate_dir` receives copies
    with boxes and labels (videos as `<name>.annotated.mp4` of the processed frames); copies
    never overwrite each other. Returns the counts (`images`, `videos`, `frames`, `faces`), the
    inputs that `failed` and the folder entries `ignored`, each as "path: reason".
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
    found = collect_inputs(inputs)
    failed = found.failed
    targets = _AnnotationTargets(annotate_dir)
    summary = {"images": 0, "videos": 0, "frames": 0, "faces": 0}
    handle = (stdout or sys.stdout) if output is None else open(output, "w", newline="")
    close = None
    try:
        write, close = _writer(handle, fmt, predictor.labels)
        bar = tqdm(found.files, desc="predict", unit="file", disable=len(found.files) < 2)
        for path, name in bar:
            is_video = path.suffix.lower() in VIDEO_EXTENSIONS
            written = 0
            try:
                if is_video:
                    records = _video(predictor, path, name, targets, frame_stride, detect_faces)
                else:
                    records = [_image(predictor, path, name, targets, detect_faces)]
                for record in records:
                    write(record)
                    written += 1
                    summary["frames"] += record["frame"] is not None
                    summary["faces"] += len(record["faces"])
                if is_video and not written:
                    raise ValueError(f"video {str(path)!r} has no frames (0 decoded)")
            except Exception as err:  # noqa: BLE001 - one bad input never ends the batch
                reason = str(err) if isinstance(err, ValueError | OSError) else repr(err)
                failed.append(f"{path}: {reason}" + (f" (after {written} frames)" * bool(written)))
                continue
            summary["videos" if is_video else "images"] += 1
    finally:
        if close is not None:  # a JSON array is closed even after Ctrl-C: what was written parses
            close()
        if output is not None:
            handle.close()
    return {
        **summary,
        "failed": failed,
        "ignored": found.ignored,
        "output": str(output) if output else None,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The one line a `predict` run ends with: what was read, what failed, what was ignored."""
    line = (
        f"{summary['images']} images, {summary['videos']} videos ({summary['frames']} frames), "
        f"{summary['faces']} faces; {len(summary['failed'])} failed, "
        f"{len(summary['ignored'])} ignored"
    )
    return line + (f"; results in {summary['output']}" if summary["output"] else "")


class _AnnotationTargets:
    """Paths for annotated copies, unique within a run: `face.png`, `face.gif` and `face.tiff`
    become `face.png`, `face.gif.png` and `face.tiff.png` (then `-2`, `-3`, ... if still taken)."""

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)
        self.used: set[Path] = set()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def claim(self, name: Path, suffix: str) -> Path:
        assert self.folder is not None
        target = self.folder / name.with_name(name.name + suffix)
        stem = target.name.removesuffix(suffix)
        number = 1
        while target in self.used:
            number += 1
            target = target.with_name(f"{stem}-{number}{suffix}")
        self.used.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def image(self, name: Path) -> Path:
        suffix = name.suffix.lower()
        if suffix in _KEEP_SUFFIX:
            return self.claim(name.with_suffix(""), name.suffix)
        return self.claim(name, ".png")

    def video(self, name: Path) -> Path:
        return self.claim(name.with_suffix(""), ".annotated.mp4")


def _image(predictor, path: Path, name: Path, targets, detect_faces) -> dict[str, Any]:
    image = load_image(path, max_pixels=predictor.max_pixels)
    faces = predictor.predict(image, detect_faces=detect_faces)
    if targets.folder is not None:
        annotate(image, faces).save(targets.image(name))
    return {"file": str(path), "frame": None, "time_s": None, "faces": faces}


def _video(predictor, path, name, targets, frame_stride, detect_faces) -> Iterator[dict]:
    if path.stat().st_size == 0:
        raise ValueError(f"video {str(path)!r} is an empty file (0 bytes)")
    info = video_info(path)
    writer = None
    try:
        frames = iter_video_frames(path, frame_stride=frame_stride)
        total = -(-info["frame_count"] // frame_stride) if info["frame_count"] > 0 else None
        for frame in tqdm(frames, desc=path.name, unit="frame", total=total, leave=False):
            faces = predictor.predict(
                frame.image,
                detect_faces=detect_faces,
                detector=getattr(predictor, "video_detector", None),
            )
            if targets.folder is not None:
                if writer is None:
                    target = targets.video(name)
                    writer = _video_writer(target, info, frame_stride, frame.image.size)
                drawn = np.asarray(annotate(frame.image, faces))
                writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            yield {"file": str(path), "frame": frame.index, "time_s": frame.time_s, "faces": faces}
    finally:
        if writer is not None:
            writer.release()


def _video_writer(target: Path, info, frame_stride: int, size) -> cv2.VideoWriter:
    fps = max(1.0, (info["fps"] or 25.0) / frame_stride)
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write the annotated video {str(target)!r} (mp4v codec).")
    return writer


def _writer(handle: IO[str], fmt: str, labels: list[str]):
    """(write(record), close()) for `fmt`; close() ends the document (the JSON array)."""
    if fmt in ("jsonl", "json"):
        count = 0
        if fmt == "json":
            handle.write("[")

        def write_json(record: dict[str, Any]) -> None:
            nonlocal count
            if fmt == "json":  # an array written as it goes: `[`, `,` between records, `]`
                handle.write(("," if count else "") + "\n" + json.dumps(record))
            else:
                handle.write(json.dumps(record) + "\n")
            count += 1

        def close_json() -> None:
            if fmt == "json":
                handle.write("\n]\n" if count else "]\n")

        return write_json, close_json

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

    return write_csv, lambda: None
