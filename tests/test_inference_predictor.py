"""`FerPredictor`: PyTorch and ONNX backends, detection, batching, results, drawing, video."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fer_hf.export import export_model
from fer_hf.inference import FerPredictor, annotate, iter_video_frames
from fer_hf.models import build_model, tiny_config

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A tiny factorized model with valence/arousal (40 px input) and its dynamic-int8 export."""
    root = tmp_path_factory.mktemp("predictor")
    torch.manual_seed(0)
    model, processor = build_model(
        "factorized",
        image_size=40,
        backbone_config=tiny_config("factorized", 40),
        valence_arousal=True,
    )
    with torch.no_grad():  # decisive logits, as a trained model has
        model.classifier.weight.mul_(50)
    model.save_pretrained(root / "torch")
    processor.save_pretrained(root / "torch")
    export_model(root / "torch", root / "onnx", quantize_mode="dynamic", measure_speed=False)
    return root


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def predictors(model_dirs):
    return {
        "torch": FerPredictor.from_pretrained(model_dirs / "torch", backend="torch"),
        "onnx": FerPredictor.from_pretrained(model_dirs / "onnx", backend="onnx"),
        "onnx-int8": FerPredictor.from_pretrained(model_dirs / "onnx", backend="onnx-int8"),
    }


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_predict_real_photo(predictors, astronaut, backend):
    faces = predictors[backend].predict(astronaut)
    assert len(faces) >= 1
    json.dumps(faces)  # JSON-serialisable as is
    for face in faces:
        assert set(face) == {"box", "label", "scores", "valence", "arousal"}
        x, y, w, h = face["box"]
        assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512 and w == h
        assert list(face["scores"]) == predictors[backend].labels
        assert sum(face["scores"].values()) == pytest.approx(1.0)
        assert face["label"] == max(face["scores"], key=face["scores"].get)
        assert -1.0 <= face["valence"] <= 1.0 and -1.0 <= face["arousal"] <= 1.0


def test_backends_agree(predictors, astronaut):
    reference = predictors["torch"].predict(astronaut)
    for backend in ("onnx", "onnx-int8"):
        faces = predictors[backend].predict(astronaut)
        assert [f["box"] for f in faces] == [f["box"] for f in reference]
        assert [f["label"] for f in faces] == [f["label"] for f in reference]
        atol = 1e-4 if backend == "onnx" else 0.05
        for face, ref in zip(faces, reference, strict=True):
            np.testing.assert_allclose(
                list(face["scores"].values()), list(ref["scores"].values()), atol=atol
            )


def test_no_face_returns_empty_list(predictors):
    assert predictors["onnx"].predict(np.full((300, 400, 3), 200, np.uint8)) == []


def test_skip_detection_and_every_mode(predictors):
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        image = Image.new("RGB", (30, 20), (90, 60, 30)).convert(mode)
        (face,) = predictors["onnx"].predict(image, detect_faces=False)
        assert face["box"] == [0, 0, 30, 20]


def test_all_faces_in_one_batch_and_saved_preprocessing(model_dirs, astronaut):
    predictor = FerPredictor.from_pretrained(model_dirs / "onnx", backend="onnx")
    calls = []
    run = predictor._runner.__call__

    def spy(pixel_values):
        calls.append(pixel_values.shape)
        return run(pixel_values)

    predictor._runner = spy
    results = predictor.predict_batch([astronaut, astronaut[:, ::-1].copy(), np.zeros((64, 64, 3))])
    assert len(calls) == 1
    assert calls[0][0] == sum(len(r) for r in results) and results[2] == []
    assert calls[0][1:] == (1, 40, 40)  # from preprocessor_config.json, not hard-coded
    assert results[0] == predictor.predict(astronaut)


def test_custom_detector_and_no_detector(model_dirs):
    class Fixed:
        def detect(self, image):
            return [(10, 10, 20, 20), (-5, 90, 20, 20), (120, 5, 10, 10)]

    image = np.zeros((100, 100, 3), np.uint8)
    predictor = FerPredictor.from_pretrained(model_dirs / "torch", detector=Fixed(), margin=0.5)
    real, calls = predictor.image_processor, []
    predictor.image_processor = lambda images, **kw: calls.append(images) or real(images, **kw)
    # Boxes are the detector's, clamped to the image (one outside it is dropped) ...
    assert [f["box"] for f in predictor.predict(image)] == [[10, 10, 20, 20], [0, 90, 15, 10]]
    # ... and the crops add a 50% margin on every side, square, clamped.
    assert [crop.size for crop in calls[0]] == [(40, 40), (22, 20)]
    predictor = FerPredictor.from_pretrained(model_dirs / "torch", detector=None)
    assert [f["box"] for f in predictor.predict(image)] == [[0, 0, 100, 100]]
    # A detector for one call only.
    assert [f["box"] for f in predictor.predict(image, detector=Fixed())][0] == [10, 10, 20, 20]
    assert predictor.detect(image, detector=Fixed())[0] == (10, 10, 20, 20)


def test_model_without_valence_arousal(tmp_path):
    model, processor = build_model(
        "baseline", image_size=32, backbone_config=tiny_config("baseline")
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    predictor = FerPredictor.from_pretrained(tmp_path, detector=None)
    (face,) = predictor.predict(np.zeros((32, 32, 3), np.uint8))
    assert face["valence"] is None and face["arousal"] is None
    assert not predictor.has_valence_arousal


def test_loading_errors(model_dirs, tmp_path):
    with pytest.raises(ValueError, match="Unknown backend 'tflite'"):
        FerPredictor.from_pretrained(model_dirs / "torch", backend="tflite")
    with pytest.raises(FileNotFoundError, match="has no model.onnx.*fer-hf export"):
        FerPredictor.from_pretrained(model_dirs / "torch", backend="onnx")
    with pytest.raises(FileNotFoundError, match="no PyTorch weights"):
        FerPredictor.from_pretrained(model_dirs / "onnx", backend="torch")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FerPredictor.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="Unknown detector 'dnn'"):
        FerPredictor.from_pretrained(model_dirs / "torch", detector="dnn")
    with pytest.raises(ValueError, match="`margin` must be"):
        FerPredictor.from_pretrained(model_dirs / "torch", margin=-1)


def test_onnx_subfolder_is_found(model_dirs, tmp_path):
    import shutil

    shutil.copytree(model_dirs / "torch", tmp_path / "model")
    shutil.copytree(model_dirs / "onnx", tmp_path / "model" / "onnx")
    predictor = FerPredictor.from_pretrained(tmp_path / "model", backend="onnx-int8")
    assert predictor.backend == "onnx-int8" and predictor.labels[0] == "neutral"


def test_annotate_draws_on_a_copy(predictors, astronaut):
    image = Image.fromarray(astronaut)
    before = image.tobytes()
    faces = predictors["torch"].predict(image)
    drawn = annotate(image, faces)
    assert drawn is not image and drawn.size == image.size and image.tobytes() == before
    drawn_too, same = predictors["torch"].predict_annotated(image)
    assert same == faces and np.array_equal(np.asarray(drawn_too), np.asarray(drawn))
    x, y, w, h = faces[0]["box"]
    assert np.asarray(drawn)[y + h // 2, x].tolist() != astronaut[y + h // 2, x].tolist()


def test_predict_video(predictors, astronaut, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    frame = cv2.cvtColor(cv2.resize(astronaut, (256, 256)), cv2.COLOR_RGB2BGR)
    for _ in range(7):
        writer.write(frame)
    writer.release()
    frames = list(iter_video_frames(path, frame_stride=3))
    assert [f.index for f in frames] == [0, 3, 6]
    assert [f.time_s for f in frames] == [0.0, 0.3, 0.6]
    records = list(predictors["onnx"].predict_video(path, frame_stride=3))
    assert [r["frame"] for r in records] == [0, 3, 6]
    assert all(len(r["faces"]) >= 1 for r in records)
    with pytest.raises(ValueError, match="frame_stride"):
        list(iter_video_frames(path, frame_stride=0))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="cannot decode the video"):
        list(iter_video_frames(bad))
