"""Inference: load a PyTorch or ONNX model folder, detect faces, classify them; images and video.

Must not import fer_hf.data, training, hub or cli. The Gradio Space uses only these names.
"""

from .alignment import aligned_crop
from .blazeface import BlazeFaceDetector, Face
from .detection import Box, FaceDetector, HaarCascadeDetector, expand_box
from .drawing import annotate, label_colour
from .files import collect_inputs, predict_files
from .images import DEFAULT_MAX_PIXELS, ImageTooLargeError, load_image
from .predictor import (
    BACKENDS,
    DETECTORS,
    ONNX_FILE_NAMES,
    FerPredictor,
    is_hub_id,
    model_folder,
    onnx_folder,
)
from .video import VIDEO_EXTENSIONS, VideoFrame, iter_video_frames, video_info

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_PIXELS",
    "DETECTORS",
    "ONNX_FILE_NAMES",
    "VIDEO_EXTENSIONS",
    "BlazeFaceDetector",
    "Box",
    "Face",
    "FaceDetector",
    "FerPredictor",
    "HaarCascadeDetector",
    "ImageTooLargeError",
    "VideoFrame",
    "aligned_crop",
    "annotate",
    "collect_inputs",
    "expand_box",
    "is_hub_id",
    "iter_video_frames",
    "label_colour",
    "load_image",
    "model_folder",
    "onnx_folder",
    "predict_files",
    "video_info",
]
