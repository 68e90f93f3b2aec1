"""Face alignment: crops along the eye line, and FerPredictor's `align` switch."""

import cv2
import numpy as np
import pytest

from fer_hf.inference import BlazeFaceDetector, FerPredictor, aligned_crop, expand_box
from fer_hf.inference.alignment import eye_roll

skimage_data = pytest.importorskip("skimage.data")
ASTRONAUT_FACE = (176, 68, 100, 106)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


def rolled(image, angle):
    """`image` turned by `angle` degrees about the astronaut's face centre (cv2: > 0 is
    counter-clockwise on screen), on a 640x480 canvas with the face in the middle."""
    x, y, w, h = ASTRONAUT_FACE
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, 1.0)
    matrix[:, 2] += (320 - x - w / 2, 240 - y - h / 2)
    return cv2.warpAffine(image, matrix, (640, 480), borderValue=(120, 120, 120))


def similarity(a, b):
    """Normalised cross-correlation of two gray crops resized to 64x64."""
    a, b = (cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (64, 64)).astype(float) for c in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_eye_roll_sign():
    assert eye_roll((0, 0), (10, 0)) == 0
    assert eye_roll((0, 0), (10, 10)) == pytest.approx(45)  # left eye lower: clockwise
    assert eye_roll((0, 10), (10, 0)) == pytest.approx(-45)


def test_zero_roll_is_the_plain_crop(astronaut):
    box = (150, 60, 120, 120)
    crop = aligned_crop(astronaut, box, 0.0, 0.15)
    x, y, w, h = expand_box(box, 0.15, 512, 512)
    np.testing.assert_array_equal(crop, astronaut[y : y + h, x : x + w])


def test_crop_outside_the_image_repeats_the_edge(astronaut):
    crop = aligned_crop(astronaut, (0, 0, 100, 100), 0.0, 0.5)
    assert crop.shape == (200, 200, 3)
    np.testing.assert_array_equal(crop[:50, 60], np.repeat(astronaut[0, 10][None], 50, axis=0))


def test_large_faces_are_resampled_to_a_bounded_side(astronaut):
    big = cv2.resize(astronaut, (2048, 2048))
    assert aligned_crop(big, (600, 250, 420, 420), 10.0, 0.15).shape == (512, 512, 3)


@pytest.mark.parametrize("angle", [-35, -20, 25, 40])
def test_rolled_face_comes_out_upright(astronaut, angle):
    detector = BlazeFaceDetector()
    upright = rolled(astronaut, 0)
    (face0,) = detector.detect_faces(upright)
    reference = aligned_crop(upright, face0.upright_box, face0.roll_degrees, 0.15)
    image = rolled(astronaut, angle)
    (face,) = detector.detect_faces(image)
    x, y, w, h = expand_box(face.box, 0.15, 640, 480)
    plain = image[y : y + h, x : x + w]
    aligned = aligned_crop(image, face.upright_box, face.roll_degrees, 0.15)
    # The aligned crop looks like the upright face (0.79-0.87 here); the plain crop of the
    # rolled face does not (0.02-0.39).
    assert similarity(aligned, reference) > 0.7
    assert similarity(aligned, reference) > similarity(plain, reference) + 0.3
    # The crop's size does not shrink with the roll as the detector's box does.
    assert face.upright_box[2] == pytest.approx(face0.upright_box[2], rel=0.08)


def test_predictor_align_switch(astronaut, monkeypatch):
    """With `align` the model is handed the rolled face upright; without it, as it is. (Checked
    on the crops the model receives: whether a given release's scores move with a 35-degree roll
    depends on how rotation-robust that release happens to be on this one face.)"""
    predictor = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", align=True
    )
    plain = FerPredictor.from_pretrained(
        "checkpoints/fer2013-factorized", backend="onnx", align=False
    )
    assert predictor.align and not plain.align
    handed = []
    for model in (predictor, plain):
        classify = model.classify
        monkeypatch.setattr(
            model, "classify", lambda faces, c=classify: handed.append(faces) or c(faces)
        )
    upright = predictor.predict(rolled(astronaut, 0))[0]
    tilted = rolled(astronaut, 35)
    aligned = predictor.predict(tilted)[0]
    unaligned = plain.predict(tilted)[0]
    assert aligned["box"] == unaligned["box"]  # the same detection, only the crop differs
    assert aligned["label"] == upright["label"] == "happy"  # the astronaut smiles
    reference, aligned_crop_, plain_crop = (np.asarray(faces[0]) for faces in handed)
    assert similarity(aligned_crop_, reference) > 0.7
    assert similarity(aligned_crop_, reference) > similarity(plain_crop, reference) + 0.3


def test_upright_box_keeps_the_centre_and_never_shrinks(astronaut):
    (face,) = BlazeFaceDetector().detect_faces(astronaut)
    x, y, w, h = face.box
    ux, uy, uw, uh = face.upright_box
    assert uw == uh >= max(w, h)
    assert (ux + uw / 2, uy + uh / 2) == pytest.approx((x + w / 2, y + h / 2))
