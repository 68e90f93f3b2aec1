"""Annotated copies are readable: contrasting text, labels sized to faces, no label on a face."""

import itertools

import numpy as np
import pytest
from PIL import Image

from fer_hf.inference import annotate, label_colour
from fer_hf.inference.drawing import MIN_FONT, contrast_ratio, layout_labels, text_colour
from fer_hf.labels import EXPRESSIONS_8


def face(box, label="anger", score=0.9):
    scores = {name: (score if name == label else 0.01) for name in EXPRESSIONS_8}
    return {"box": list(box), "label": label, "scores": scores, "valence": None, "arousal": None}


@pytest.mark.parametrize("label", EXPRESSIONS_8)
def test_label_text_contrasts_with_its_colour(label):
    # WCAG AA for normal text: 4.5:1 (white on the yellow "anger" colour was about 1.3:1).
    assert contrast_ratio(text_colour(label_colour(label)), label_colour(label)) >= 4.5


def test_drawn_label_uses_the_contrasting_text_colour():
    image = Image.new("RGB", (300, 300), (128, 128, 128))
    faces = [face((100, 120, 120, 120), "anger")]
    drawn = np.asarray(annotate(image, faces))
    (label,) = layout_labels(faces, image.size)
    left, top, right, bottom = label.rect
    pixels = {tuple(p) for p in drawn[top:bottom, left:right].reshape(-1, 3)}
    assert tuple(label_colour("anger")) in pixels and (0, 0, 0) in pixels  # black text
    assert (255, 255, 255) not in pixels
    assert np.asarray(image).max() == 128  # the input image is never drawn on


def test_a_face_at_the_top_edge_keeps_its_label_off_the_face_below():
    # Face A touches the top edge; face B sits right below it. The old layout put A's label
    # under A's box, over B's face.
    faces = [face((50, 0, 100, 100), "happy"), face((50, 104, 100, 100), "sad")]
    a, b = layout_labels(faces, (200, 210))
    assert a.rect[1] >= 0 and a.rect[3] <= 100  # inside A's own box, at its top
    assert not (a.rect[3] > 104)  # nothing of A's label reaches B's box
    assert b.rect[1] >= 100  # B's label: above B, in the gap or on A's lower edge at most
    assert not (a.rect[0] < b.rect[2] and b.rect[0] < a.rect[2] and a.rect[1] < b.rect[3]
                and b.rect[1] < a.rect[3])  # fmt: skip


def test_thirty_faces_get_face_sized_labels_that_do_not_overlap():
    # 30 faces of 60 px in a 6 x 5 grid with 30 px gaps, in a large (1600 x 1200) photo: the
    # font follows the faces, not the image (the old rule gave every label a 40 px font).
    boxes = [(100 + 90 * c, 100 + 90 * r, 60, 60) for r, c in itertools.product(range(5), range(6))]
    faces = [face(b, EXPRESSIONS_8[i % 8]) for i, b in enumerate(boxes)]
    labels = layout_labels(faces, (1600, 1200))
    assert all(MIN_FONT <= label.font_size <= 16 for label in labels)
    for label in labels:
        assert 0 <= label.rect[0] and label.rect[2] <= 1600
        assert 0 <= label.rect[1] and label.rect[3] <= 1200
    for first, second in itertools.combinations(labels, 2):
        a, b = first.rect, second.rect
        assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # ... and no label covers another face's box.
    for i, label in enumerate(labels):
        for j, (x, y, w, h) in enumerate(boxes):
            if i != j:
                a = label.rect
                assert not (a[0] < x + w and x < a[2] and a[1] < y + h and y < a[3]), (i, j)
    annotate(Image.new("RGB", (1600, 1200)), faces)  # and it draws


def test_one_big_face_gets_a_big_label():
    (label,) = layout_labels([face((100, 300, 600, 600))], (800, 1000))
    assert label.font_size >= 30
