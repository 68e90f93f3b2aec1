"""bench/detection.py's scenes and scoring (the figures themselves come from running it)."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import detection  # noqa: E402

sys.path.pop(0)


@pytest.fixture(scope="module")
def scenes():
    return detection.make_scenes(0)


def test_scene_set(scenes):
    kinds = {kind: sum(s["kind"] == kind for s in scenes) for kind in detection.SCENE_COUNTS}
    assert kinds == detection.SCENE_COUNTS
    assert sum(s["kind"] == "no_face" for s in scenes) == detection.NO_FACE_COUNT
    assert all(s["image"].shape == (480, 640, 3) for s in scenes)
    assert all(s["boxes"] == [] for s in scenes if s["kind"] == "no_face")
    group = [s for s in scenes if s["kind"] == "group"]
    assert len(group[0]["boxes"]) == 30  # the 30-face scene
    small = [b for s in scenes if s["kind"] == "small_30_60" for b in s["boxes"]]
    assert min(b[2] for b in small) >= 30 and max(b[2] for b in small) <= 60
    # Deterministic for a seed.
    again = detection.make_scenes(0)
    assert all((a["image"] == b["image"]).all() for a, b in zip(scenes, again, strict=True))


def test_scoring_with_oracle_and_blind_detectors(scenes):
    truth = {id(s["image"]): s["boxes"] for s in scenes}

    class Oracle:
        def detect(self, image):
            return [tuple(round(v) for v in box) for box in truth[id(image)]]

    class Blind:
        def detect(self, image):
            return [(0, 0, 20, 20)]  # one false face everywhere

    perfect = detection.evaluate(Oracle(), scenes, repeats=1)
    assert perfect["recall"] == 1.0 and perfect["false_positives_per_image_no_face"] == 0.0
    assert perfect["false_positives_per_image_face_scenes"] == 0.0
    blind = detection.evaluate(Blind(), scenes, repeats=1)
    assert blind["recall"] == 0.0 and blind["false_positives_per_image_no_face"] == 1.0
    assert detection.targets(perfect)["recall"]["met"]
    assert not detection.targets(blind)["all_met"]


def test_match_is_one_to_one():
    assert detection.match([(0, 0, 10, 10)], [(0, 0, 10, 10), (1, 1, 10, 10)]) == (1, 1)
    assert detection.match([(0, 0, 10, 10), (100, 0, 10, 10)], [(0, 0, 10, 10)]) == (1, 0)
    assert detection.match([(0, 0, 10, 10)], [(8, 8, 10, 10)]) == (0, 1)
