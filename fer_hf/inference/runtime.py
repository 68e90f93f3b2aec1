"""The torch-free serving path: ONNX Runtime sessions and the model's preprocessing in numpy/PIL.

`fer-hf predict --backend onnx` and the Space's ONNX backends run on ONNX Runtime, numpy, PIL and
OpenCV only; torch, transformers and optimum are never imported here.
Must not import fer_hf.data, training, hub, export, models or cli.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The image processor class this module replicates; any other processor loads via transformers.
FER_PROCESSOR_TYPE = "FerImageProcessor"
PROCESSOR_FILE_NAME = "preprocessor_config.json"


def onnx_session(
    model: str | Path | bytes,
    num_threads: int | None = None,
    spinning: bool = False,
    fixed_dimensions: dict[str, int] | None = None,
):
    """A CPU `onnxruntime.InferenceSession` (full graph optimisation, `num_threads` intra-op).

    Sessions are thread-safe: one serves concurrent `run` calls. `spinning=False` lets ONNX
    Runtime's idle worker threads sleep instead of busy-waiting: on a CPU shared with other
    work (a Space's parallel requests, a training run) busy-waiting threads take cores from it;
    BlazeFace at 2 threads beside two training processes took 72 ms per 640x480 image spinning,
    24 ms not (a bench/detection.py scene, 2-core Xeon). `BlazeFaceDetector` and
    `FerPredictor` pass `spinning=True` by default (a process with the cores to itself: 13.5 vs
    16.5 ms per 640x480 image at 2 threads on an idle 2-core Xeon); the Space passes False.
    `fixed_dimensions` fixes named dynamic input axes (e.g. `{"height": 320}`) for the
    session's lifetime, so the graph optimiser can plan for that shape.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    for name, size in (fixed_dimensions or {}).items():
        options.add_free_dimension_override_by_name(name, size)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


class NumpyFerImageProcessor:
    """`FerImageProcessor`'s preprocessing (fer_hf/models/image_processing_fer.py) without
    transformers: the same PIL conversions and resize, then rescale and normalise in numpy, so
    both give identical `pixel_values` (tests/test_inference_runtime.py checks it).

    Built from a model folder's preprocessor_config.json with `from_pretrained`; called like the
    transformers processor: `processor(images=[...], return_tensors="np")["pixel_values"]`.
    """

    def __init__(self, config: dict[str, Any]):
        self.do_resize = bool(config.get("do_resize", True))
        size = config.get("size", 48)
        if isinstance(size, int):
            size = {"height": size, "width": size}
        self.size = {"height": int(size["height"]), "width": int(size["width"])}
        self.resample = int(config.get("resample", Image.Resampling.BILINEAR))
        self.do_grayscale = bool(config.get("do_grayscale", False))
        self.num_channels = int(config.get("num_channels", 3))
        self.do_rescale = bool(config.get("do_rescale", True))
        self.rescale_factor = float(config.get("rescale_factor", 1 / 255))
        self.do_normalize = bool(config.get("do_normalize", True))
        self.image_mean = np.asarray(
            config.get("image_mean") or [0.5] * self.num_channels, np.float32
        )
        self.image_std = np.asarray(
            config.get("image_std") or [0.5] * self.num_channels, np.float32
        )
        crop = config.get("crop_size")
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        self.crop_size = None if crop is None else {k: int(crop[k]) for k in ("height", "width")}

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> NumpyFerImageProcessor | None:
        """The processor of `folder`, or None when its processor is not a FerImageProcessor."""
        path = Path(folder) / PROCESSOR_FILE_NAME
        if not path.is_file():
            return None
        config = json.loads(path.read_text())
        if config.get("image_processor_type") != FER_PROCESSOR_TYPE:
            return None
        return cls(config)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, crop_size={self.crop_size}, "
            f"grayscale={self.do_grayscale}, "
            f"num_channels={self.num_channels})"
        )

    def __call__(
        self, images, return_tensors: str | None = "np", **kwargs
    ) -> dict[str, np.ndarray]:
        if isinstance(images, Image.Image | np.ndarray):
            images = [images]
        gray = self.do_grayscale or self.num_channels == 1
        out = self.crop_size or self.size
        batch = np.empty((len(images), self.num_channels, out["height"], out["width"]), np.float32)
        for i, image in enumerate(images):
            pil = image if isinstance(image, Image.Image) else Image.fromarray(_hwc_uint8(image))
            pil = pil.convert("L" if gray else "RGB")
            if self.do_resize:
                pil = pil.resize((self.size["width"], self.size["height"]), resample=self.resample)
            if self.crop_size is not None:
                crop = self.crop_size
                left, top = (pil.width - crop["width"]) // 2, (pil.height - crop["height"]) // 2
                pil = pil.crop((left, top, left + crop["width"], top + crop["height"]))
            array = np.asarray(pil, dtype=np.float32)
            array = array[..., None] if array.ndim == 2 else array  # (H, W, 1 or 3)
            if array.shape[-1] != self.num_channels:
                array = np.repeat(array, self.num_channels, axis=-1)
            if self.do_rescale:
                array = array * np.float32(self.rescale_factor)
            if self.do_normalize:
                array = (array - self.image_mean) / self.image_std
            batch[i] = array.transpose(2, 0, 1)  # (C, H, W)
        return {"pixel_values": batch}


def _hwc_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise TypeError(
            f"Face crops must be PIL images or (H, W[, C]) uint8 arrays, got {array.dtype} "
            f"{array.shape}."
        )
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    return array
