"""The Gradio Space end to end: space/app.py in a subprocess, driven through gradio_client."""

import json

import pytest
from helpers_space import running_app, write_photos
from PIL import Image

from fer_hf.models import init_model_folder

pytest.importorskip("skimage")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

FACE_KEYS = {"box", "label", "scores", "valence", "arousal"}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The app serving an untrained factorized model (with valence/arousal) and a missing one."""
    root = tmp_path_factory.mktemp("space")
    model = init_model_folder("factorized", root / "tiny", valence_arousal=True)
    models = f"tiny={model},missing={root / 'not-trained-yet'}"
    with running_app(models, root / "app") as url:
        client = Client(url, verbose=False, download_files=str(root / "downloads"))
        yield {"client": client, "root": root, "photos": write_photos(root / "photos")}


def predict(space, name, *args):
    return space["client"].predict(
        handle_file(str(space["photos"][name])), *args, api_name="/predict_json"
    )


def check_faces(faces, image_size):
    json.dumps(faces)
    width, height = image_size
    for face in faces:
        assert set(face) == FACE_KEYS
        x, y, w, h = face["box"]
        assert 0 <= x < x + w <= width and 0 <= y < y + h <= height
        assert len(face["scores"]) == 7
        assert sum(face["scores"].values()) == pytest.approx(1.0, abs=1e-6)
        assert face["label"] == max(face["scores"], key=face["scores"].get)
        assert -1.0 <= face["valence"] <= 1.0 and -1.0 <= face["arousal"] <= 1.0


def test_api_lists_predict_json(space):
    endpoints = space["client"].view_api(print_info=False, return_format="dict")
    assert "/predict_json" in endpoints["named_endpoints"]


def test_astronaut_photo_has_a_face(space):
    faces = predict(space, "astronaut")
    assert len(faces) >= 1
    check_faces(faces, (512, 512))


def test_every_face_of_a_group_photo(space):
    faces = predict(space, "two_faces")
    assert len(faces) == 2
    check_faces(faces, (1024, 512))
    assert {f["box"][0] < 512 for f in faces} == {True, False}  # one face in each half


def test_no_face_gives_an_empty_list(space):
    assert predict(space, "no_face") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("corrupt", r"'corrupt\.jpg' is truncated or corrupt"),
        ("text", r"'notes\.png' is not an image file"),
        ("huge", r"'huge\.png' is 8000x6000 = 48,000,000 pixels, more than the 40,000,000"),
    ],
)
def test_bad_upload_is_a_clear_error_and_the_app_keeps_serving(space, name, message):
    with pytest.raises(AppError, match=message) as err:
        predict(space, name)
    assert str(space["root"]) not in str(err.value)  # the server's copy is never named
    assert len(predict(space, "astronaut")) >= 1


def test_unknown_or_missing_model_is_a_clear_error(space):
    with pytest.raises(AppError, match=r"Unknown model 'vit'; expected one of \['tiny', 'missing'"):
        predict(space, "astronaut", "vit")
    with pytest.raises(
        AppError, match=r"Model 'missing': folder .*not-trained-yet' does not exist"
    ):
        predict(space, "astronaut", "missing")
    with pytest.raises(AppError, match=r"Unknown backend 'tensorrt'"):
        predict(space, "astronaut", "tiny", "tensorrt")


def test_onnx_backends_are_exported_on_first_use_and_agree(space):
    reference = predict(space, "astronaut", "tiny", "torch")
    for backend, atol in (("onnx", 1e-4), ("onnx-int8", 0.05)):
        faces = predict(space, "astronaut", "tiny", backend)
        assert [f["box"] for f in faces] == [f["box"] for f in reference]
        for face, ref in zip(faces, reference, strict=True):
            for label, p in ref["scores"].items():
                assert face["scores"][label] == pytest.approx(p, abs=atol)
    exports = list((space["root"] / "app" / "onnx-cache").glob("*/model_quantized.onnx"))
    assert len(exports) == 1  # one export serves both ONNX backends


def test_photo_tab_returns_boxes_bars_circumplex_and_json(space):
    image, status, bars, plot, faces = space["client"].predict(
        handle_file(str(space["photos"]["two_faces"])), "tiny", "torch", api_name="/analyse_photo"
    )
    assert Image.open(image).size == (1024, 512)
    assert status.startswith("2 faces · tiny (torch)")
    assert bars.count('class="fer-face"') == 2 and "Face 2: " in bars
    assert plot["visible"] is True and plot["value"]["type"] == "matplotlib"
    assert len(faces) == 2 and set(faces[0]) == FACE_KEYS


def test_photo_tab_without_a_face_says_so(space):
    image, status, bars, plot, faces = space["client"].predict(
        handle_file(str(space["photos"]["no_face"])), "tiny", "torch", api_name="/analyse_photo"
    )
    assert Image.open(image).size == (320, 240)  # the photo is shown, not an empty image
    assert status.startswith("**No face found.**")
    assert faces == [] and plot["visible"] is False
