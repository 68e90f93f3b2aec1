"""`fer-hf predict` outcomes: annotated copies never overwrite each other, one pixel limit
(fer-hf's, never Pillow's), output formats chosen by extension, every outcome counted."""

import json

import pytest
from PIL import Image

from fer_hf.cli import main
from fer_hf.inference import ImageTooLargeError, load_image
from fer_hf.models import init_model_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return init_model_folder("factorized", tmp_path_factory.mktemp("outcomes") / "m", image_size=32)


def test_annotated_copies_of_same_named_files_do_not_overwrite_each_other(model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    colours = {"face.png": (200, 0, 0), "face.gif": (0, 200, 0), "face.tiff": (0, 0, 200)}
    for name, colour in colours.items():
        Image.new("RGB", (40, 30), colour).save(photos / name)
    (photos / "face.gif.png").write_bytes((photos / "face.png").read_bytes())  # a decoy name
    out = tmp_path / "annotated"
    code = main(["predict", str(photos), "--model", str(model), "--annotate", str(out),
                 "--output", str(tmp_path / "r.jsonl")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = sorted(p.name for p in (out / "photos").iterdir())
    assert written == ["face.gif-2.png", "face.gif.png", "face.png", "face.tiff.png"]
    # Each copy shows its own input (the fill colour survives annotation: no faces found).
    assert Image.open(out / "photos" / "face.tiff.png").getpixel((5, 5)) == (0, 0, 200)
    assert Image.open(out / "photos" / "face.png").getpixel((5, 5)) == (200, 0, 0)
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").open()]
    assert len(records) == 4


def test_fer_hf_pixel_limit_replaces_pillows(tmp_path, monkeypatch, capsys, model):
    """Pillow refuses more than twice its MAX_IMAGE_PIXELS by itself, whatever the caller asked;
    fer-hf's own limit must decide (and `--max-pixels 0` lift it), with one limit in the message."""
    path = tmp_path / "big.png"
    Image.new("L", (100, 100), 128).save(path)  # 10,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow would refuse above 2,000
    assert load_image(path, max_pixels=None).size == (100, 100)
    assert load_image(path, max_pixels=20_000).size == (100, 100)
    with pytest.raises(ImageTooLargeError) as err:
        load_image(path, max_pixels=5_000)
    message = str(err.value)
    assert "100x100 = 10,000 pixels, more than the 5,000-pixel limit" in message
    assert "2,000" not in message and "1,000" not in message  # Pillow's limits are not quoted
    assert err.value.size == (100, 100) and err.value.limit == 5_000
    assert Image.MAX_IMAGE_PIXELS == 1_000  # Pillow's setting is restored

    assert main(["predict", str(path), "--model", str(model), "--max-pixels", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == str(path)
    assert main(["predict", str(path), "--model", str(model), "--max-pixels", "5000"]) == 1
    assert "--max-pixels N, 0 for no limit" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_output_format_follows_the_extension(suffix, model, tmp_path):
    image = tmp_path / "blank.png"
    Image.new("RGB", (40, 30), 90).save(image)
    out = tmp_path / f"results{suffix}"
    assert (
        main(["predict", str(image), str(image), "--model", str(model), "--output", str(out)]) == 0
    )
    text = out.read_text()
    if suffix == ".json":
        assert [r["file"] for r in json.loads(text)] == [str(image)] * 2  # one JSON array
    elif suffix == ".jsonl":
        assert [json.loads(line)["file"] for line in text.splitlines()] == [str(image)] * 2
    else:
        assert text.splitlines()[0].startswith("file,frame,time_s,face")


def test_a_partly_failed_batch_writes_everything_then_exits_1(model, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), 90).save(good)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    out = tmp_path / "r.json"
    code = main(["predict", str(good), str(empty), str(tmp_path / "nope"), "--model", str(model),
                 "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert [r["file"] for r in json.loads(out.read_text())] == [str(good)]
    assert f"failed {empty}: '{empty}' is an empty file (0 bytes)" in err
    assert f"failed {tmp_path / 'nope'}: no such file or folder" in err
    assert err.strip().splitlines()[-1] == (
        f"1 images, 0 videos (0 frames), 0 faces; 2 failed, 0 ignored; results in {out}"
    )
