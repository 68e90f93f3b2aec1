"""`fer_hf.data.samples`: one reader of labelled image paths (prepared folders, class-folder trees
with split aliases, plain image folders) for evaluation and the export's samples."""

import pytest
from PIL import Image

from fer_hf.data import canonical_split, image_source, load_sample
from fer_hf.labels import class_names


def test_samples_from_prepared_folder_and_image_folder(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(class_names(7)))})
    images = [Image.new("L", (48, 48), i * 20) for i in range(6)]
    splits = {
        name: Dataset.from_dict({"image": images, "label": [i % 7 for i in range(6)]}, features)
        for name in ("train", "validation")
    }
    DatasetDict(splits).save_to_disk(tmp_path / "prepared")
    sample = load_sample(tmp_path / "prepared", "validation", 4, seed=1)
    assert len(sample.images) == 4 and sample.source.endswith("[validation]")
    assert set(sample.labels) <= set(class_names(7))

    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(3):
        Image.new("RGB", (10, 10)).save(plain / f"{i}.jpg")
    sample = load_sample(plain, "calibration", 10)
    assert len(sample.images) == 3 and sample.labels is None
    with pytest.raises(ValueError, match="No images"):
        load_sample(tmp_path / "prepared" / "train", "calibration", 4)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_sample(tmp_path / "nope", "calibration", 4)


@pytest.mark.parametrize(
    ("name", "split"),
    [("val", "validation"), ("PublicTest", "validation"), ("dev", "validation"),
     ("PrivateTest", "test"), ("Training", "train"), ("holdout", "holdout")],
)  # fmt: skip
def test_canonical_split(name, split):
    assert canonical_split(name) == split


def test_samples_read_split_folders_under_any_alias(tmp_path):
    """Export calibration reads train/, parity checks the held-out split, whatever it is called."""
    for split, value in (("Training", 10), ("PublicTest", 200)):
        for name in ("happy", "sad"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.new("L", (8, 8), value).save(folder / "0.png")
            Image.new("L", (8, 8), value).save(folder / "1.pgm")
    held_out = load_sample(tmp_path, "validation", 10)
    assert held_out.source.endswith("PublicTest") and len(held_out.images) == 4
    assert sorted(held_out.labels) == ["happy", "happy", "sad", "sad"]
    calibration = image_source(tmp_path)("calibration", 3, 0)
    assert calibration.source.endswith("Training") and len(calibration.images) == 3
