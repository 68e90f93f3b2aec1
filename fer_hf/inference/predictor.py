"""`FerPredictor`: load a PyTorch or ONNX (fp32/int8) model folder, find faces, classify them.

Must not import fer_hf.data, training, hub or cli; the Gradio Space uses only this public API.
The ONNX backends never import torch, transformers or optimum (see runtime.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..artifacts import ONNX_FILE_NAMES, ONNX_SUBFOLDER, read_json
from .alignment import aligned_crop
from .blazeface import BlazeFaceDetector, Face
from .detection import Box, FaceDetector, HaarCascadeDetector, expand_box
from .drawing import annotate
from .images import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .runtime import NumpyFerImageProcessor, onnx_session
from .video import iter_video_frames

BACKENDS = ("torch", "onnx", "onnx-int8")
# `detector=` names: BlazeFace (DNN, default) and OpenCV's Haar cascades, each in a photo and a
# video setting. The video settings are what `predict_video` and the webcam use by default.
DETECTORS = ("blazeface", "blazeface-video", "haar", "haar-video")
VIDEO_DETECTORS = {"blazeface": "blazeface-video", "haar": "haar-video"}


class FerPredictor:
    """Facial expression recognition on whole images: detect faces, crop, classify in one batch.

    Build it with [`FerPredictor.from_pretrained`]. Every result is a JSON-serialisable dict
    `{"box": [x, y, w, h], "label": str, "scores": {label: prob}, "valence": float | None,
    "arousal": float | None}`, with the box in the input image's pixel coordinates.

    Example:
        >>> predictor = FerPredictor.from_pretrained("exported/", backend="onnx-int8")
        >>> predictor.predict("group_photo.jpg")
        [{'box': [412, 80, 136, 136], 'label': 'happy', 'scores': {...}, ...}]
    """

    def __init__(
        self,
        runner: _TorchRunner | _OnnxRunner,
        image_processor: Any,
        id2label: dict[int, str],
        detector: FaceDetector | None,
        margin: float = 0.15,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        backend: str = "torch",
        align: bool = True,
        video_detector: FaceDetector | None = None,
    ):
        self._runner = runner
        self.image_processor = image_processor
        self.id2label = dict(id2label)
        self.labels = [self.id2label[i] for i in range(len(self.id2label))]
        self.detector = detector
        self.video_detector = video_detector if video_detector is not None else detector
        self.margin = margin
        self.max_pixels = max_pixels
        self.backend = backend
        self.align = align

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(backend={self.backend!r}, labels={self.labels}, "
            f"detector={self.detector!r}, align={self.align}, margin={self.margin})"
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: str = "torch",
        detector: FaceDetector | str | None = "blazeface",
        margin: float = 0.15,
        num_threads: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        align: bool = True,
        spinning: bool = True,
    ) -> FerPredictor:
        """Load a model folder (or Hub repo id).

        Args:
            path: a `save_pretrained` folder (backend "torch") or a `fer-hf export` folder
                (backends "onnx" -> `model.onnx`, "onnx-int8" -> `model_quantized.onnx`); a PyTorch
                folder with an `onnx/` subfolder works for every backend.
            backend: "torch", "onnx" or "onnx-int8".
            detector: "blazeface" (default: MediaPipe's full-range BlazeFace DNN, two passes so
                30-60 px faces in group photos are found; eye keypoints for alignment),
                "blazeface-video" (one pass, for webcam frames and video), "haar" (OpenCV's Haar
                cascades, thorough), "haar-video" (fast cascade settings), any object with
                `detect(rgb_array) -> [(x, y, w, h), ...]` (and optionally `detect_faces`, as
                `BlazeFaceDetector`, for keypoints), or None to treat every input as an already
                cropped face. `predict_video` uses the named detector's video setting.
            margin: the crop given to the model is the face box grown by this fraction of its
                size on every side, made square and clamped to the image (results keep the
                detector's box).
            num_threads: CPU threads for the model and the BlazeFace detector (ONNX Runtime
                sessions; torch sets them process-wide). None keeps the library default.
            max_pixels: larger images are refused (decompression bombs); None disables the check.
            align: rotate each face so its eyes are level before classification (needs a
                detector with keypoints: BlazeFace; Haar boxes are used as they are).
            spinning: ONNX Runtime's worker threads (the ONNX backends, the BlazeFace detector)
                busy-wait between operators, its own default and the fastest setting when the
                process has the cores to itself; pass False on a CPU shared with other work (a
                training run, a server's parallel requests), where they would take cores from it.
        """
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; expected one of {BACKENDS}.")
        if not isinstance(margin, int | float) or not 0.0 <= margin <= 1.0:
            raise ValueError(f"`margin` must be a number in [0, 1], got {margin!r}.")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"`num_threads` must be a positive int or None, got {num_threads!r}.")
        folder = _backend_folder(path, backend)
        if backend == "torch":
            from fer_hf.models import load_model_folder

            model, image_processor = load_model_folder(folder)
            runner = _TorchRunner(model, num_threads)
            id2label = runner.id2label
        else:
            image_processor = NumpyFerImageProcessor.from_pretrained(folder)
            if image_processor is None:  # not a FerImageProcessor: transformers replicates it
                from fer_hf.models import load_processor

                image_processor = load_processor(folder)
            runner = _OnnxRunner(folder / ONNX_FILE_NAMES[backend], num_threads, spinning)
            config = read_json(folder / "config.json", "a transformers config")
            id2label = {int(k): v for k, v in config["id2label"].items()}
        made = _make_detector(detector, num_threads, spinning)
        return cls(
            runner,
            image_processor,
            id2label,
            detector=made,
            margin=margin,
            max_pixels=max_pixels,
            backend=backend,
            align=align,
            video_detector=_video_detector(detector, made, num_threads, spinning),
        )

    @property
    def has_valence_arousal(self) -> bool:
        return self._runner.has_valence_arousal

    def detect(self, image: ImageInput, detector: FaceDetector | None = None) -> list[Box]:
        """The detector's face boxes `(x, y, w, h)`, clamped to the image, largest face first."""
        rgb = load_image(image, max_pixels=self.max_pixels)
        return [box for box, _ in self._faces(rgb, True, detector or self.detector)]

    def predict(
        self, image: ImageInput, detect_faces: bool = True, detector: FaceDetector | None = None
    ) -> list[dict[str, Any]]:
        """Classify every face in `image` (path, bytes, PIL image or RGB array); [] if none.

        With `detect_faces=False` (or no detector) the whole image is one face. `detector`
        replaces the predictor's for this call, e.g. `predictor.video_detector` on webcam
        frames, or one Haar detector per thread (OpenCV cascades are not thread-safe; BlazeFace
        is).
        """
        return self.predict_batch([image], detect_faces, detector)[0]

    def predict_annotated(
        self, image: ImageInput, detect_faces: bool = True, detector: FaceDetector | None = None
    ) -> tuple[Image.Image, list[dict[str, Any]]]:
        """`predict`, plus an RGB copy of the image (EXIF-rotated) with the faces drawn on it."""
        rgb = load_image(image, max_pixels=self.max_pixels)
        faces = self.predict(rgb, detect_faces, detector)
        return annotate(rgb, faces), faces

    def predict_batch(
        self,
        images: Iterable[ImageInput],
        detect_faces: bool = True,
        detector: FaceDetector | None = None,
    ) -> list[list[dict[str, Any]]]:
        """`predict` for several images; all their faces go through the model in one batch.

        A result's box is the detector's; the model sees that box grown by `margin` on every
        side and made square (clamped to the image), the framing of the training crops. With
        `align` and a detector that gives eye keypoints, that square is taken along the eye
        line instead (sized by `Face.upright_box`), so a rolled head reaches the model upright.
        """
        detector = detector or self.detector
        detected = detect_faces and detector is not None
        rgbs = [load_image(image, max_pixels=self.max_pixels) for image in images]
        found = [self._faces(rgb, detect_faces, detector) for rgb in rgbs]
        crops = []
        for rgb, faces in zip(rgbs, found, strict=True):
            array = None
            for box, face in faces:
                if detected and self.align and face is not None:
                    array = np.asarray(rgb) if array is None else array
                    crops.append(
                        aligned_crop(array, face.upright_box, face.roll_degrees, self.margin)
                    )
                    continue
                x, y, w, h = expand_box(box, self.margin, *rgb.size) if detected else box
                crops.append(rgb.crop((x, y, x + w, y + h)))
        classified = self.classify(crops) if crops else []
        results, start = [], 0
        for faces in found:
            chunk = classified[start : start + len(faces)]
            start += len(faces)
            results.append(
                [{"box": list(box), **face} for (box, _), face in zip(faces, chunk, strict=True)]
            )
        return results

    def classify(self, faces: list[Image.Image | np.ndarray]) -> list[dict[str, Any]]:
        """Classify face crops (no detection) in one batch: `label`, `scores`, valence, arousal."""
        if not faces:
            return []
        pixel_values = self.image_processor(images=list(faces), return_tensors="np")
        logits, valence_arousal = self._runner(pixel_values["pixel_values"].astype(np.float32))
        probs = _softmax(logits.astype(np.float64))
        results = []
        for i, row in enumerate(probs):
            va = valence_arousal[i] if valence_arousal is not None else (None, None)
            results.append(
                {
                    "label": self.labels[int(row.argmax())],
                    "scores": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
                    "valence": None if va[0] is None else float(va[0]),
                    "arousal": None if va[1] is None else float(va[1]),
                }
            )
        return results

    def predict_video(
        self,
        path: str | Path,
        frame_stride: int = 1,
        detect_faces: bool = True,
        detector: FaceDetector | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield `{"frame": index, "time_s": seconds, "faces": [...]}` for every Nth frame.

        Frames go through `detector`, by default the predictor's `video_detector` (the fast
        setting of the named detector, e.g. one BlazeFace pass).
        """
        for frame in iter_video_frames(path, frame_stride=frame_stride):
            faces = self.predict(frame.image, detect_faces, detector or self.video_detector)
            yield {"frame": frame.index, "time_s": frame.time_s, "faces": faces}

    @staticmethod
    def _faces(
        rgb: Image.Image, detect_faces: bool, detector: FaceDetector | None
    ) -> list[tuple[Box, Face | None]]:
        """`(box clamped to the image, the detector's Face with keypoints or None)` per face."""
        width, height = rgb.size
        if not detect_faces or detector is None:
            return [((0, 0, width, height), None)]
        array = np.asarray(rgb)
        if callable(getattr(detector, "detect_faces", None)):  # a detector with keypoints
            found = [(face.box, face) for face in detector.detect_faces(array)]
        else:
            found = [(box, None) for box in detector.detect(array)]
        faces = []
        for (x, y, w, h), face in found:
            x0, y0 = max(0, int(x)), max(0, int(y))
            x1, y1 = min(width, int(x) + int(w)), min(height, int(y) + int(h))
            if x1 > x0 and y1 > y0:
                faces.append(((x0, y0, x1 - x0, y1 - y0), face))
        return faces


class _TorchRunner:
    def __init__(self, model: Any, num_threads: int | None):
        import torch

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self.model = model
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        self.has_valence_arousal = bool(getattr(self.model.config, "valence_arousal", False))

    def __call__(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with self._torch.inference_mode():
            output = self.model(pixel_values=self._torch.from_numpy(pixel_values))
        va = getattr(output, "valence_arousal", None)
        return output.logits.numpy(), None if va is None else va.numpy()


class _OnnxRunner:
    def __init__(self, path: Path, num_threads: int | None, spinning: bool = True):
        self.session = onnx_session(path, num_threads, spinning=spinning)
        outputs = [o.name for o in self.session.get_outputs()]
        self.has_valence_arousal = "valence_arousal" in outputs
        self._outputs = ["logits", "valence_arousal"] if self.has_valence_arousal else ["logits"]

    def __call__(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.session.run(self._outputs, {"pixel_values": pixel_values})
        return outputs[0], outputs[1] if self.has_valence_arousal else None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _make_detector(
    detector: FaceDetector | str | None, num_threads: int | None = None, spinning: bool = True
) -> FaceDetector | None:
    if detector is None or isinstance(detector, FaceDetector):
        return detector
    if detector == "blazeface":
        return BlazeFaceDetector(num_threads=num_threads, spinning=spinning)
    if detector == "blazeface-video":
        return BlazeFaceDetector.for_video(num_threads=num_threads, spinning=spinning)
    if detector == "haar":
        return HaarCascadeDetector()
    if detector == "haar-video":
        return HaarCascadeDetector.for_video()
    raise ValueError(
        f"Unknown detector {detector!r}; expected one of {list(DETECTORS)}, None or an object "
        "with a `detect(rgb_array) -> [(x, y, w, h), ...]` method."
    )


def _video_detector(
    name: FaceDetector | str | None,
    detector: FaceDetector | None,
    num_threads: int | None,
    spinning: bool = True,
) -> FaceDetector | None:
    """The video setting that goes with a named photo detector (None: use the detector itself)."""
    if name == "blazeface":
        return detector.as_video()  # shares the loaded model
    if isinstance(name, str) and name in VIDEO_DETECTORS:
        return _make_detector(VIDEO_DETECTORS[name], num_threads, spinning)
    return None


def is_hub_id(location: str | Path) -> bool:
    """Whether `location` reads as a Hub repo id (`owner/name`) rather than a local path."""
    return (
        isinstance(location, str)
        and location.count("/") == 1
        and not location.startswith((".", "/", "~"))
    )


def model_folder(location: str | Path) -> Path:
    """The local folder of a model: `location` itself, or a Hub repo id downloaded (cached)."""
    folder = Path(location)
    if folder.exists():
        return folder
    if not is_hub_id(location):
        raise FileNotFoundError(f"Model folder {str(location)!r} does not exist.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(location)))
    except Exception as err:  # offline, unknown repo, gated, network: one message
        raise FileNotFoundError(
            f"{str(location)!r} is not a local folder and could not be fetched from the Hub "
            f"({type(err).__name__}: {err})."
        ) from None


def onnx_folder(folder: Path, backend: str) -> Path | None:
    """Where `folder` keeps the ONNX file of `backend` ("onnx"/"onnx-int8"): the folder itself
    (an export) or its `onnx/` subfolder (a release); None when neither has it."""
    name = ONNX_FILE_NAMES[backend]
    return next((c for c in (folder, folder / ONNX_SUBFOLDER) if (c / name).is_file()), None)


def _backend_folder(path: str | Path, backend: str) -> Path:
    """The local folder holding what `backend` needs (downloads a Hub repo id when online)."""
    folder = model_folder(path)
    if not folder.is_dir():
        raise ValueError(f"{str(path)!r} is a file; expected a model folder.")
    if backend == "torch":
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} has no config.json; it is not a model folder."
            )
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            raise FileNotFoundError(
                f"{str(folder)!r} holds no PyTorch weights (*.safetensors). For an exported folder "
                "use backend='onnx' or 'onnx-int8'."
            )
        return folder
    found = onnx_folder(folder, backend)
    if found is not None:
        return found
    name = ONNX_FILE_NAMES[backend]
    hint = (
        "export with `fer-hf export MODEL_DIR --output OUT --quantize dynamic`"
        if backend == "onnx-int8"
        else "export with `fer-hf export MODEL_DIR --output OUT`"
    )
    raise FileNotFoundError(f"{str(folder)!r} has no {name} (nor onnx/{name}); {hint}.")
