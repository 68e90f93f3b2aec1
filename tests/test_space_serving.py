"""The Space's serving logic without a server: model sources, lazy loading, uploads, smoothing."""

import base64

import numpy as np
import pytest
import torch
from helpers_space import SPACE_DIR, write_photos
from PIL import Image

from fer_hf.models import build_model, tiny_config


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
    folder = tmp_path_factory.mktemp("serving") / "tiny"
    torch.manual_seed(0)
    model, processor = build_model(
        "factorized", image_size=40, backbone_config=tiny_config("factorized", 40)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_model_sources_from_the_environment(fer_space):
    sources = fer_space.model_sources(" fast = /m/a , /m/b/ ,owner/vit-fer")
    assert sources == {"fast": "/m/a", "b": "/m/b/", "vit-fer": "owner/vit-fer"}
    assert list(sources)[0] == "fast"  # the first entry is the default model
    with pytest.raises(ValueError, match=r"names the model 'a' twice"):
        fer_space.model_sources("a=/x,a=/y")
    with pytest.raises(ValueError, match=r"entry 'fast=' is incomplete"):
        fer_space.model_sources("fast=")


def test_model_sources_default_to_the_bundled_checkpoints(fer_space, tmp_path):
    sources = fer_space.model_sources(None)
    assert list(sources)[0] == "fer2013-factorized"
    assert sources["fer2013-factorized"] == str(fer_space.DEFAULT_MODEL_DIR)
    # On a Space, the README header's `models` (Hub ids) are served instead.
    readme = tmp_path / "README.md"
    readme.write_text("---\nsdk: gradio\nmodels:\n- org/fer2013-vit\n- org/fer2013-base\n---\n")
    assert fer_space.model_sources(None, space_readme=readme) == {
        "fer2013-vit": "org/fer2013-vit",
        "fer2013-base": "org/fer2013-base",
    }
    assert fer_space.model_sources("x=/m", space_readme=readme) == {"x": "/m"}


def test_zoo_loads_lazily_caches_and_exports_once(fer_space, tiny_model, tmp_path):
    zoo = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path / "cache")
    assert zoo._loaded == {}  # nothing is loaded before first use
    torch_predictor = zoo.get("tiny", "torch")
    assert zoo.get("tiny", "torch") is torch_predictor
    assert not (tmp_path / "cache").exists()  # torch needs no export
    int8 = zoo.get("tiny", "onnx-int8")
    (export,) = (tmp_path / "cache").iterdir()
    assert {"model.onnx", "model_quantized.onnx"} <= {p.name for p in export.iterdir()}
    assert int8.backend == "onnx-int8"
    stamp = (export / "model.onnx").stat().st_mtime_ns
    again = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path / "cache")
    assert again.get("tiny", "onnx").backend == "onnx"
    assert (export / "model.onnx").stat().st_mtime_ns == stamp  # reused, not re-exported
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no partial exports left behind


def test_zoo_uses_a_release_onnx_subfolder(fer_space, tiny_model, tmp_path):
    from fer_hf.export import export_model

    release = tmp_path / "release"
    export_model(tiny_model, release / "onnx", quantize_mode="dynamic", measure_speed=False)
    for file in tiny_model.iterdir():
        (release / file.name).write_bytes(file.read_bytes())
    zoo = fer_space.ModelZoo({"r": str(release)}, tmp_path / "cache")
    assert zoo.get("r", "onnx-int8").backend == "onnx-int8"
    assert not (tmp_path / "cache").exists()


def test_zoo_errors_name_the_problem(fer_space, tiny_model, tmp_path):
    zoo = fer_space.ModelZoo({"tiny": str(tiny_model), "gone": str(tmp_path / "gone")}, tmp_path)
    with pytest.raises(
        ValueError, match=r"Unknown model 'vit'; expected one of \['tiny', 'gone'\]"
    ):
        zoo.get("vit", "torch")
    with pytest.raises(ValueError, match=r"Unknown backend 'cuda'"):
        zoo.get("tiny", "cuda")
    assert zoo.missing() == ["gone"]
    with pytest.raises(FileNotFoundError, match=r"Model 'gone': folder .*gone' does not exist"):
        zoo.get("gone", "torch")
    offline = fer_space.ModelZoo({"hub": "nobody/no-such-fer-model"}, tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"'nobody/no-such-fer-model' is not a local folder"
    ):
        offline.get("hub", "torch")
    with pytest.raises(ValueError, match=r"No models to serve"):
        fer_space.ModelZoo({}, tmp_path)


def test_webcam_frames_use_the_video_detector(fer_space, tiny_model, tmp_path):
    from skimage import data

    zoo = fer_space.ModelZoo({"tiny": str(tiny_model)}, tmp_path)
    frame = np.full((480, 640, 3), 90, np.uint8)
    head = Image.fromarray(data.astronaut()[0:300, 80:330]).resize((400, 480))
    frame[:, 120:520] = np.asarray(head)
    image, faces, labels = zoo.predict_frame("tiny", "torch", frame)
    assert image.size == (640, 480) and len(faces) == 1 and len(labels) == 7
    assert set(faces[0]) == {"box", "label", "scores", "valence", "arousal"}
    assert zoo.predict_frame("tiny", "torch", frame[:, :, 0] * 0)[1] == []


def test_read_upload_names_the_users_file(fer_space, tmp_path):
    photos = write_photos(tmp_path)
    image = fer_space.read_upload({"path": str(photos["astronaut"]), "orig_name": "me.png"})
    assert image.size == (512, 512) and image.mode == "RGB"
    data_url = "data:image/png;base64," + base64.b64encode(photos["no_face"].read_bytes()).decode()
    assert fer_space.read_upload({"path": None, "url": data_url}).size == (320, 240)
    assert fer_space.read_upload(None) is None
    with pytest.raises(ValueError, match=r"^'holiday\.jpg' is truncated or corrupt") as err:
        fer_space.read_upload({"path": str(photos["corrupt"]), "orig_name": "holiday.jpg"})
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(ValueError, match=r"more than the 40,000,000 pixels this demo accepts"):
        fer_space.read_upload({"path": str(photos["huge"]), "orig_name": "huge.png"})
    with pytest.raises(ValueError, match=r"carries no file"):
        fer_space.read_upload({"path": None, "url": None, "orig_name": "x.png"})
    with pytest.raises(TypeError, match=r"got list"):
        fer_space.read_upload([1, 2])


def _face(box, scores, labels=("neutral", "happy", "sad")):
    return {
        "box": list(box),
        "label": labels[int(np.argmax(scores))],
        "scores": dict(zip(labels, scores, strict=True)),
        "valence": None,
        "arousal": None,
    }


def test_face_tracks_smooth_flicker_per_face(fer_space):
    labels = ["neutral", "happy", "sad"]
    tracks = fer_space.FaceTracks(window=4)
    # Face A mostly happy with one neutral glitch; face B steadily sad. Boxes jitter a little.
    a_scores = [[0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.55, 0.4, 0.05], [0.1, 0.8, 0.1]]
    shown = []
    for i, scores in enumerate(a_scores):
        faces = [_face((10 + i, 10, 50, 50), scores), _face((200 - i, 20, 60, 60), [0.1, 0.1, 0.8])]
        out = tracks.update(faces, labels)
        shown.append([f["label"] for f in out])
        assert [f["box"] for f in out] == [f["box"] for f in faces]
        assert all(sum(f["scores"].values()) == pytest.approx(1.0) for f in out)
    assert shown == [["happy", "sad"]] * 4  # the glitch frame (raw: neutral) stays happy
    assert len(tracks.tracks) == 2
    # A face gone for more than max_missing frames is forgotten; another model resets all.
    for _ in range(tracks.max_missing + 1):
        tracks.update([_face((200, 20, 60, 60), [0.1, 0.1, 0.8])], labels)
    assert len(tracks.tracks) == 1
    out = tracks.update(
        [_face((10, 10, 50, 50), [0.6, 0.2, 0.2], ("a", "b", "c"))], ["a", "b", "c"]
    )
    assert out[0]["scores"] == {"a": 0.6, "b": 0.2, "c": 0.2} and len(tracks.tracks) == 1


def test_face_tracks_average_valence_arousal(fer_space):
    tracks = fer_space.FaceTracks(window=2)
    for va in ((0.2, -0.4), (0.4, 0.0), (0.8, 0.2)):
        face = {**_face((0, 0, 40, 40), [0.2, 0.5, 0.3]), "valence": va[0], "arousal": va[1]}
        (out,) = tracks.update([face], ["neutral", "happy", "sad"])
    assert out["valence"] == pytest.approx(0.6) and out["arousal"] == pytest.approx(0.1)


def test_detector_pool_bounds_concurrency_and_reuses_detectors(fer_space):
    import threading
    import time

    state = {"running": 0, "peak": 0, "built": 0}
    lock = threading.Lock()

    class SlowDetector:
        def __init__(self):
            with lock:
                state["built"] += 1

        def detect(self, image):
            with lock:
                state["running"] += 1
                state["peak"] = max(state["peak"], state["running"])
            time.sleep(0.02)
            with lock:
                state["running"] -= 1
            return [(0, 0, 1, 1)]

    pool = fer_space.DetectorPool(SlowDetector, size=2)
    threads = [threading.Thread(target=pool.detect, args=(None,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["peak"] == 2 and state["built"] == 2


def test_space_readme_header_matches_the_app():
    from importlib.metadata import version

    from huggingface_hub import metadata_load

    header = metadata_load(SPACE_DIR / "README.md")
    assert header["sdk"] == "gradio" and header["sdk_version"] == version("gradio")
    assert (SPACE_DIR / header["app_file"]).is_file()
    assert header["models"][0].endswith("fer2013-factorized")  # the default model first
    assert header["license"] == "apache-2.0" and header["title"] and header["emoji"]
    requirements = (SPACE_DIR / "requirements.txt").read_text()
    for package in ("torch", "transformers", "onnxruntime", "opencv-python-headless"):
        assert f"\n{package}=={version(package).split('+')[0]}\n" in requirements
