"""The Space's face detector: BlazeFace shared by parallel workers (Haar on request)."""

import threading

import numpy as np
import pytest
import torch
from helpers_space import SPACE_DIR

from fer_hf.inference import BlazeFaceDetector
from fer_hf.models import build_model, tiny_config

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def fer_space():
    import sys

    sys.path.insert(0, str(SPACE_DIR))
    try:
        import fer_space
    finally:
        sys.path.remove(str(SPACE_DIR))
    return fer_space


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("space-detector") / "tiny"
    torch.manual_seed(0)
    model, processor = build_model(
        "factorized", image_size=40, backbone_config=tiny_config("factorized", 40)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_blazeface_is_the_default_and_shared(fer_space, tiny_model, tmp_path):
    zoo = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path)
    assert isinstance(zoo.detector, BlazeFaceDetector) and zoo.detector.input_sides == (192, 416)
    assert isinstance(zoo.video_detector, BlazeFaceDetector)
    assert zoo.video_detector.input_sides == (192,)
    assert zoo.video_detector._session is zoo.detector._session  # one model in memory
    torch_predictor, onnx_predictor = zoo.get("tiny", "torch"), zoo.get("tiny", "onnx")
    assert torch_predictor.detector is zoo.detector is onnx_predictor.detector
    options = onnx_predictor._runner.session.get_session_options()
    assert options.intra_op_num_threads == 1
    # Parallel requests share the cores: nothing busy-waits.
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert zoo.detector.spinning is False
    faces = onnx_predictor.predict(skimage_data.astronaut())
    assert len(faces) == 1


def test_haar_on_request_and_unknown_detector(fer_space, tiny_model, tmp_path):
    zoo = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path, detector="haar")
    assert isinstance(zoo.detector, fer_space.DetectorPool)
    assert len(zoo.get("tiny", "torch").predict(skimage_data.astronaut())) >= 1
    with pytest.raises(ValueError, match="Unknown detector 'yolo'"):
        fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path, detector="yolo")


def test_parallel_requests_get_the_sequential_results(fer_space, tiny_model, tmp_path):
    zoo = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path, workers=4)
    astronaut = skimage_data.astronaut()
    photos = [astronaut, astronaut[:, ::-1], np.ascontiguousarray(astronaut[40:400, 60:460])]
    predictor = zoo.get("tiny", "onnx")
    expected = [predictor.predict(p) for p in photos]
    results, errors = [], []

    def client(index):
        try:
            for _ in range(4):
                results.append((index, predictor.predict(photos[index % 3])))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 24
    for index, faces in results:
        assert faces == expected[index % 3]
