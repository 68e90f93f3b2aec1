"""Face detection with OpenCV's Haar cascades on a real photo (scikit-image's astronaut)."""

import numpy as np
import pytest
from PIL import Image

from fer_hf.inference import FaceDetector, HaarCascadeDetector, expand_box

skimage_data = pytest.importorskip("skimage.data")

# Eileen Collins' face in skimage.data.astronaut() (512 x 512), by eye: x 175-275, y 60-165.
FACE_CENTRE = (225, 112)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector():
    return HaarCascadeDetector()


def _contains(box, point):
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_real_photo_has_a_face(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert len(boxes) >= 1
    assert any(_contains(box, FACE_CENTRE) for box in boxes)
    assert all(isinstance(v, int) for box in boxes for v in box)


def test_no_face_gives_empty_list(detector):
    assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []
    smooth = np.linspace(0, 255, 320 * 240).reshape(240, 320).astype(np.uint8)
    assert detector.detect(np.stack([smooth] * 3, axis=-1)) == []


def test_huge_image_is_downscaled_and_boxes_mapped_back(detector, astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048)))
    boxes = detector.detect(big)
    assert any(_contains(box, (FACE_CENTRE[0] * 4, FACE_CENTRE[1] * 4)) for box in boxes)
    assert max(w for _, _, w, _ in boxes) > 200  # in full-resolution pixels


def test_video_preset_on_a_webcam_frame(astronaut):
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = np.asarray(Image.fromarray(astronaut).resize((480, 480)))
    boxes = HaarCascadeDetector.for_video().detect(frame)
    centre = (80 + FACE_CENTRE[0] * 480 / 512, FACE_CENTRE[1] * 480 / 512)
    assert any(_contains(box, centre) for box in boxes)


def test_profile_modes_and_protocol(astronaut):
    frontal_only = HaarCascadeDetector(profile="never").detect(astronaut)
    both = HaarCascadeDetector(profile="always").detect(astronaut)
    assert set(frontal_only) <= set(both)  # the profile pass only adds faces the frontal missed
    assert isinstance(HaarCascadeDetector(), FaceDetector)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_side": 10}, "max_side"),
        ({"min_size": 2}, "min_size"),
        ({"scale_factor": 1.0}, "scale_factor"),
        ({"min_neighbors": -1}, "min_neighbors"),
        ({"profile": "sometimes"}, "profile"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HaarCascadeDetector(**kwargs)


def test_missing_cascade_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Haar cascade"):
        HaarCascadeDetector(cascade_dir=tmp_path)


def test_expand_box_square_with_margin_and_clamped():
    assert expand_box((40, 40, 20, 10), 0.25, 200, 200) == (35, 30, 30, 30)
    # Near the top-left corner the square is clipped by the image border.
    assert expand_box((0, 0, 20, 20), 0.5, 100, 100) == (0, 0, 30, 30)
    # Larger than the image: clamped to the whole image.
    assert expand_box((5, 5, 90, 90), 1.0, 100, 80) == (0, 0, 100, 80)
