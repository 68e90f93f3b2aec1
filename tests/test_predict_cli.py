"""`fer-hf predict` on folders of images and on a generated video: records, CSV, annotations."""

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_hf.cli import main
from fer_hf.models import build_model, tiny_config

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_model")
    model, processor = build_model(
        "factorized", image_size=32, backbone_config=tiny_config("factorized")
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    photos = root / "photos"
    (photos / "nested").mkdir(parents=True)
    astronaut = skimage_data.astronaut()
    Image.fromarray(astronaut).save(photos / "astronaut.jpg")
    Image.fromarray(astronaut).convert("L").save(photos / "nested" / "gray.png")
    Image.new("RGB", (200, 150), (30, 120, 200)).save(photos / "blank.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (photos / "notes.txt").write_text("ignored: not an image extension")

    video = root / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    frame = np.full((240, 320, 3), 80, np.uint8)
    frame[:, 40:280] = cv2.cvtColor(cv2.resize(astronaut, (240, 240)), cv2.COLOR_RGB2BGR)
    for _ in range(10):
        writer.write(frame)
    writer.release()
    return root


def test_predict_folder_to_jsonl_with_annotations(model_dir, inputs, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    code = main(
        [
            "predict",
            str(inputs / "photos"),
            "--model",
            str(model_dir),
            "--output",
            str(out),
            "--annotate",
            str(tmp_path / "annotated"),
        ]
    )
    assert code == 1  # broken.jpg failed; everything else was still written
    records = {json.loads(line)["file"].split("/")[-1]: json.loads(line) for line in out.open()}
    assert set(records) == {"astronaut.jpg", "gray.png", "blank.png"}
    assert len(records["astronaut.jpg"]["faces"]) >= 1
    assert len(records["gray.png"]["faces"]) >= 1
    assert records["blank.png"]["faces"] == []
    assert records["astronaut.jpg"]["frame"] is None
    err = capsys.readouterr().err
    assert "failed" in err and "broken.jpg" in err and "truncated or corrupt" in err
    assert "notes.txt: not an image or video file (extension '.txt')" in err
    assert "3 images, 0 videos (0 frames)" in err and "1 failed, 1 ignored" in err
    annotated = tmp_path / "annotated" / "photos"
    assert (annotated / "astronaut.jpg").is_file() and (annotated / "nested" / "gray.png").is_file()
    assert Image.open(annotated / "astronaut.jpg").size == (512, 512)


def test_predict_video_to_csv(model_dir, inputs, tmp_path):
    out = tmp_path / "results.csv"
    code = main(
        [
            "predict",
            str(inputs / "clip.avi"),
            "--model",
            str(model_dir),
            "--backend",
            "torch",
            "--frame-stride",
            "4",
            "--output",
            str(out),
            "--annotate",
            str(tmp_path / "ann"),
            "--detector",
            "haar-video",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted({int(r["frame"]) for r in rows}) == [0, 4, 8]
    assert sorted({float(r["time_s"]) for r in rows}) == [0.0, 0.8, 1.6]
    assert all(r["label"] and 0 <= float(r["score"]) <= 1 for r in rows)
    assert {"p_happy", "p_neutral", "x", "w"} <= set(rows[0])
    capture = cv2.VideoCapture(str(tmp_path / "ann" / "clip.annotated.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_predict_no_detect_to_stdout(model_dir, inputs, capsys):
    path = inputs / "photos" / "blank.png"
    assert main(["predict", str(path), "--model", str(model_dir), "--no-detect"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["faces"][0]["box"] == [0, 0, 200, 150]


def test_predict_errors(model_dir, inputs, tmp_path, capsys, monkeypatch):
    bad = inputs / "photos" / "broken.jpg"
    assert main(["predict", str(bad), "--model", str(model_dir)]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err
    code = main(["predict", str(bad), "--model", str(model_dir), "--output", "r.xlsx"])
    assert code == 2 and "Unknown output format '.xlsx'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope.jpg"), "--model", str(model_dir)]) == 1
    assert "no such file or folder" in capsys.readouterr().err

    import fer_hf.cli.predict

    # Without --model: the checkout's release (cwd, then the package's checkout), else the Hub.
    assert fer_hf.cli.predict.default_model().endswith("checkpoints/fer2013-factorized")
    monkeypatch.setattr(fer_hf.cli.predict, "DEFAULT_MODEL", "checkpoints/x")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fer_hf.cli.predict.default_model() == fer_hf.cli.predict.DEFAULT_HUB_MODEL
    assert main(["predict", str(bad)]) == 2
    assert fer_hf.cli.predict.DEFAULT_HUB_MODEL in capsys.readouterr().err
