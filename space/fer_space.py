"""Serving logic of the fer-hf Space: which models, lazy loading and ONNX export, webcam smoothing.

Plain Python (no gradio), so it is unit-tested without a server. Uses only fer_hf's public API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fer_hf.inference import (
    BACKENDS,
    ONNX_FILE_NAMES,
    BlazeFaceDetector,
    FerPredictor,
    HaarCascadeDetector,
    ImageTooLargeError,
    is_hub_id,
    load_image,
    model_folder,
    onnx_folder,
)

logger = logging.getLogger("fer_hf.space")

BUNDLED_KINDS = ("factorized", "baseline", "vit")  # the default model comes first
# A checkout's release folders (checkpoints/fer2013-<kind>), named here by the entry point.
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_MODEL_DIR = BUNDLED_DIR / f"fer2013-{BUNDLED_KINDS[0]}"
# Every photo, whether uploaded as a file or sent as a data: URL, meets both limits before it
# is decoded (decompression bombs, memory).
MAX_PIXELS = 40_000_000
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the upload limit the server is launched with, too
RUN_DIR_PREFIX = "fer-hf-run-"  # one folder per server run: its uploads, results and examples


def model_sources(spec: str | None = None, space_readme: Path | None = None) -> dict[str, str]:
    """Dropdown name -> local model folder or Hub id; the first entry is the default model.

    `spec` is FER_HF_MODELS: comma-separated `name=location` or `location` entries. Without it, a
    Space (SPACE_ID set) serves the Hub ids listed under `models:` in its README header, and a
    checkout serves the bundled checkpoints/fer2013-{factorized,baseline,vit} that exist (the
    factorized one always, so a missing checkpoint is reported when used, not at start-up).
    """
    if spec is not None and spec.strip():
        sources: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            name, sep, location = (part.strip() for part in entry.partition("="))
            if not sep:
                name, location = Path(name.rstrip("/")).name, name
            if not name or not location:
                raise ValueError(
                    f"FER_HF_MODELS entry {entry!r} is incomplete; use `name=folder-or-hub-id` "
                    "or `folder-or-hub-id`, comma-separated."
                )
            if name in sources:
                raise ValueError(f"FER_HF_MODELS names the model {name!r} twice: {spec!r}.")
            sources[name] = location
        return sources
    if space_readme is not None and space_readme.is_file():
        from huggingface_hub import metadata_load

        ids = (metadata_load(space_readme) or {}).get("models") or []
        if ids:
            return {repo_id.split("/")[-1]: repo_id for repo_id in ids}
    sources = {}
    for kind in BUNDLED_KINDS:
        folder = BUNDLED_DIR / f"fer2013-{kind}"
        if kind == BUNDLED_KINDS[0] or folder.is_dir():
            sources[folder.name] = str(folder)
    return sources


SPACE_DETECTORS = ("blazeface", "haar")


class DetectorPool:
    """Haar face detection for concurrent requests. OpenCV cascades are not thread-safe, so each
    call borrows one of at most `size` detectors, built by `factory` when first needed.
    (BlazeFace needs no pool: one ONNX Runtime session serves every thread.)"""

    def __init__(self, factory: Callable[[], HaarCascadeDetector], size: int):
        self._factory = factory
        self._free: queue.LifoQueue[HaarCascadeDetector] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        with self._slots:
            try:
                detector = self._free.get_nowait()
            except queue.Empty:
                detector = self._factory()
            try:
                return detector.detect(image)
            finally:
                self._free.put(detector)


class ModelZoo:
    """Predictors by (model name, backend), loaded on first use and kept.

    ONNX backends read a release's `onnx/` subfolder (or an export folder) when present; otherwise
    the model is exported once (fp32 + dynamic int8) into `cache_dir`. Faces are found by
    BlazeFace (`detector="blazeface"`: the two-pass photo setting for photos, one pass for webcam
    frames; one detector shared by all `workers` threads, one ONNX Runtime thread per call so
    concurrent requests run side by side) or by pooled Haar cascades (`detector="haar"`).
    """

    def __init__(
        self,
        sources: dict[str, str],
        cache_dir: str | Path,
        workers: int = 2,
        detector: str = "blazeface",
    ):
        if not sources:
            raise ValueError("No models to serve; set FER_HF_MODELS to `name=folder-or-hub-id`.")
        if detector not in SPACE_DETECTORS:
            raise ValueError(f"Unknown detector {detector!r}; expected one of {SPACE_DETECTORS}.")
        self.sources = dict(sources)
        self.cache_dir = Path(cache_dir)
        if detector == "blazeface":
            # Parallel requests share the cores: no busy-waiting worker threads (one thread
            # has none; this keeps it so if the count is ever raised).
            self.detector = BlazeFaceDetector(num_threads=1, spinning=False)
            self.video_detector = self.detector.as_video()  # shares the loaded model
        else:
            self.detector = DetectorPool(HaarCascadeDetector, workers)
            self.video_detector = DetectorPool(HaarCascadeDetector.for_video, workers)
        self._loaded: dict[tuple[str, str], FerPredictor] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in sources}

    def missing(self) -> list[str]:
        """Models whose local folder does not exist (Hub ids are only checked when used)."""
        return [
            name
            for name, location in self.sources.items()
            if not is_hub_id(location) and not Path(location).is_dir()
        ]

    def get(self, name: str, backend: str) -> FerPredictor:
        if name not in self.sources:
            raise ValueError(f"Unknown model {name!r}; expected one of {list(self.sources)}.")
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; expected one of {list(BACKENDS)}.")
        key = (name, backend)
        if key not in self._loaded:
            with self._locks[name]:  # one load (or export) per model at a time
                if key not in self._loaded:
                    start = time.perf_counter()
                    self._loaded[key] = self._load(name, backend)
                    logger.info(
                        "Loaded %s (%s) in %.1fs", name, backend, time.perf_counter() - start
                    )
        return self._loaded[key]

    def predict_frame(
        self, name: str, backend: str, frame: np.ndarray
    ) -> tuple[Image.Image, list[dict[str, Any]], list[str]]:
        """A webcam frame's image, faces and label order: fast video detector, one model batch."""
        predictor = self.get(name, backend)
        if frame.shape[0] * frame.shape[1] > MAX_PIXELS:  # Gradio decoded it; refuse the work
            raise ValueError(
                f"The webcam frame is {frame.shape[1]}x{frame.shape[0]} pixels, more than the "
                f"{MAX_PIXELS:,} pixels this demo accepts."
            )
        image = load_image(frame)
        faces = predictor.predict(image, detector=self.video_detector)
        return image, faces, predictor.labels

    def _load(self, name: str, backend: str) -> FerPredictor:
        folder = self._local_folder(name)
        if backend != "torch" and onnx_folder(folder, backend) is None:
            folder = self._export(folder)
        return FerPredictor.from_pretrained(
            folder,
            backend=backend,
            detector=self.detector,
            max_pixels=MAX_PIXELS,
            # One thread per request (ONNX Runtime sessions; torch process-wide): the requests
            # run in parallel (workers). torch at 2 threads on a busy 2-core CPU took 360 ms
            # per face instead of 2.4 (bench/results/inference_e2e.json).
            num_threads=1,
            spinning=False,
        )

    def _local_folder(self, name: str) -> Path:
        location = self.sources[name]
        folder = Path(location)
        if folder.is_dir():
            return folder
        if is_hub_id(location):
            try:
                return model_folder(location)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"Model {name!r}: {err}") from None
        raise FileNotFoundError(
            f"Model {name!r}: folder {location!r} does not exist. Train it (see README), or "
            "point FER_HF_MODELS at a model folder, e.g. one made with `fer-hf init`."
        )

    def _export(self, folder: Path) -> Path:
        from fer_hf.export import export_model

        weights = sorted(folder.glob("*.safetensors"))
        stamp = "|".join([str(folder.resolve())] + [f"{w.stat().st_mtime_ns}" for w in weights])
        target = self.cache_dir / hashlib.sha256(stamp.encode()).hexdigest()[:16]
        if (target / ONNX_FILE_NAMES["onnx-int8"]).is_file():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=self.cache_dir))
        logger.info("Exporting %s to ONNX in %s (first use)", folder, target)
        try:
            report = export_model(
                folder, partial, quantize_mode="dynamic", num_validation=64, measure_speed=False
            )
            if not report["passed"]:
                logger.warning("ONNX parity check failed for %s; see %s", folder, target)
            try:
                os.replace(partial, target)  # atomic: a half-written export is never picked up
            except OSError:  # another process exported the same model first
                if not (target / ONNX_FILE_NAMES["onnx-int8"]).is_file():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target


class FaceTracks:
    """Per-session webcam smoothing: each face's probabilities averaged over its last frames.

    Faces are matched to the previous frame's by box overlap (IoU), so with several people in
    view each keeps its own history; a face unseen for `max_missing` frames is forgotten.
    """

    def __init__(self, window: int = 8, max_missing: int = 5, min_iou: float = 0.3):
        self.window, self.max_missing, self.min_iou = window, max_missing, min_iou
        self.labels: list[str] = []
        self.tracks: list[dict[str, Any]] = []

    def update(self, faces: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
        if labels != self.labels:  # another model: histories are not comparable
            self.labels, self.tracks = list(labels), []
        free = list(self.tracks)
        smoothed = []
        for face in faces:
            best = max(free, key=lambda t: _iou(t["box"], face["box"]), default=None)
            if best is None or _iou(best["box"], face["box"]) < self.min_iou:
                best = {"history": deque(maxlen=self.window)}
                self.tracks.append(best)
            else:
                free.remove(best)
            va = (face["valence"], face["arousal"])
            best.update(box=face["box"], missing=0)
            best["history"].append(([face["scores"][k] for k in labels], va))
            scores = np.mean([h[0] for h in best["history"]], axis=0)
            mean_va = [None, None]
            if va[0] is not None:
                mean_va = np.mean([h[1] for h in best["history"]], axis=0).tolist()
            smoothed.append(
                {
                    "box": face["box"],
                    "label": labels[int(scores.argmax())],
                    "scores": dict(zip(labels, scores.tolist(), strict=True)),
                    "valence": mean_va[0],
                    "arousal": mean_va[1],
                }
            )
        for track in free:
            track["missing"] += 1
        self.tracks = [t for t in self.tracks if t["missing"] <= self.max_missing]
        return smoothed


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def read_upload(payload: dict[str, Any] | str | None) -> Image.Image | None:
    """The RGB image of an un-preprocessed gr.Image payload; clear errors for bad files.

    File uploads and `data:` URLs alike are refused over `MAX_UPLOAD_BYTES` or `MAX_PIXELS`
    before decoding; messages name the user's file, never the server's copy of it.
    """
    if payload is None:
        return None
    if isinstance(payload, str):  # a plain path (e.g. from an example)
        payload = {"path": payload}
    if not isinstance(payload, dict):
        raise TypeError(f"Expected an image file payload, got {type(payload).__name__}.")
    path, url = payload.get("path"), payload.get("url") or ""
    name = payload.get("orig_name") or (Path(path).name if path else "pasted image")
    try:
        if path:
            return load_image(path, max_pixels=MAX_PIXELS, max_bytes=MAX_UPLOAD_BYTES)
        if url.startswith("data:"):
            start = url.find(",") + 1  # no copy of the payload before its size is checked
            if not start:
                raise ValueError(f"The upload {name!r} is a data: URL without data.")
            size = (len(url) - start) * 3 // 4  # base64: 4 characters per 3 bytes
            if size > MAX_UPLOAD_BYTES + 2:
                raise _too_many_bytes(name, size)
            try:
                data = base64.b64decode(url[start:], validate=True)
            except ValueError:
                raise ValueError(f"The upload {name!r} is not valid base64 data.") from None
            return load_image(data, max_pixels=MAX_PIXELS, max_bytes=MAX_UPLOAD_BYTES)
    except ImageTooLargeError as err:
        if isinstance(err.size, tuple):
            (width, height), pixels = err.size, err.size[0] * err.size[1]
            raise ValueError(
                f"{name!r} is {width}x{height} = {pixels:,} pixels, more than the "
                f"{MAX_PIXELS:,} pixels this demo accepts. Downscale the photo (e.g. to 4,000 px "
                "on its longer side) and upload it again."
            ) from None
        raise _too_many_bytes(name, err.size) from None
    except ValueError as err:  # name the user's file, not the server's copy of it
        raise ValueError(str(err).replace(repr(str(path)), repr(name))) from None
    raise ValueError(f"The upload {name!r} carries no file; upload the image again.")


def _too_many_bytes(name: str, size: int) -> ValueError:
    return ValueError(
        f"{name!r} is {size / 1024**2:.1f} MB, more than the {MAX_UPLOAD_BYTES / 1024**2:.0f} MB "
        "this demo accepts; it was not decoded. Save the photo smaller (e.g. as JPEG) and "
        "upload it again."
    )


def claim_run_dir(base: str | Path) -> Path:
    """A new folder in `base` for this server run (uploads, results, examples), marked with the
    process id and start time, so a later run can tell it from a live server's folder."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=base))
    owner = {"pid": os.getpid(), "started": _process_start(os.getpid())}
    (run_dir / "owner.json").write_text(json.dumps(owner))
    return run_dir


def sweep_run_dirs(base: str | Path) -> list[Path]:
    """Delete the run folders in `base` left by servers that are no longer running (killed
    with SIGKILL, or a crash); returns them. Live servers' folders are left alone."""
    removed = []
    for run_dir in sorted(Path(base).glob(f"{RUN_DIR_PREFIX}*")):
        try:
            owner = json.loads((run_dir / "owner.json").read_text())
            started = _process_start(int(owner["pid"]))
            alive = started is not None and started == owner["started"]
        except (OSError, ValueError, KeyError, TypeError):
            # No readable owner: a folder being created right now, or half deleted. Only an
            # old one is stale.
            alive = time.time() - _mtime(run_dir) < 60
        if not alive:
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(run_dir)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _process_start(pid: int) -> str | None:
    """An id of process `pid`'s start (its start time in clock ticks on Linux), None if it is not
    running; comparing it guards against a new process that got a dead server's pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[19]  # field 22, after the command name
    except (OSError, IndexError):
        return "alive"  # no /proc: the pid alone has to do
