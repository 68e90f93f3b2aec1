"""The dataset card of a `fer-hf prepare` folder: parses, and shows the recipe and class table."""

import json
import shutil

import numpy as np
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from fer_hf.hub import render_dataset_card

FOLDERS = {"angry": 6, "happy": 6, "sad": 5, "neutral": 6, "surprise": 4, "fear": 5, "disgust": 2}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A FER2013 class-folder tree (train/test, one unreadable file) prepared with oversampling."""
    from fer_hf.data import prepare

    root = tmp_path_factory.mktemp("fer2013")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, count in FOLDERS.items():
            folder = root / "raw" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "raw" / "train" / "happy" / "broken.png").write_bytes(b"not an image")
    out = root / "prepared"
    prepare("fer2013", root / "raw", out, resample="oversample", val_fraction=0.2, seed=7)
    return out


def test_dataset_card_parses_and_shows_the_recipe(prepared, tmp_path):
    report = json.loads((prepared / "prepare_report.json").read_text())
    card = render_dataset_card(prepared)
    card.save(tmp_path / "README.md")
    loaded = DatasetCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.license == "other" and data.license_name == "fer2013-kaggle-competition-terms"
    assert data.task_categories == ["image-classification"]
    assert data.size_categories == ["n<1K"]
    text = loaded.text
    assert "[More Information Needed]" not in str(card) and "{{" not in text
    assert "--classes 7 --resample oversample" in text and "--seed 7" in text
    for feature in ("image", "label", "valence", "arousal", "source"):
        assert f"| `{feature}` |" in text
    assert "| `label` | `ClassLabel` (7 names) |" in text
    assert f"| validation | {report['num_records']['validation']} | carved from train" in text
    before, after = report["class_counts_before"], report["class_counts_after"]
    for label in report["class_names"]:
        cells = [before["train"][label], after["train"][label]]
        cells += [before[s][label] for s in report["splits"][1:]]
        assert f"| {label} | {' | '.join(str(c) for c in cells)} |" in text
    assert "Skipped as unreadable or invalid: 1;" in text
    assert "**It carries no images**" in text and "@inproceedings{goodfellow2013challenges" in text


def test_dataset_card_refuses_other_folders(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="fer_hf_dataset.json is missing"):
        render_dataset_card(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    meta = json.loads((copy / "fer_hf_dataset.json").read_text())
    (copy / "fer_hf_dataset.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="has format 'other', expected 'fer-hf-prepared'"):
        render_dataset_card(copy)
    (copy / "fer_hf_dataset.json").write_text(json.dumps({**meta, "source": "folder"}))
    with pytest.raises(ValueError, match="licence of source 'folder' is unknown"):
        render_dataset_card(copy)
    card = render_dataset_card(copy, license="cc-by-4.0")
    assert card.data.license == "cc-by-4.0" and "Released under `cc-by-4.0`." in card.text
