"""FER2013: the Kaggle CSV and the class-folder layout, label mapping and bad rows."""

import pytest
from data_fixtures import write_class_tree, write_fer2013_csv

from fer_hf.data import build_dataset
from fer_hf.labels import FER2013_CODES, class_names


def _build(data_dir, tmp_path, **kwargs):
    return build_dataset("fer2013", data_dir, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_csv_splits_labels_and_bad_rows(tmp_path):
    root = tmp_path / "fer"
    root.mkdir()
    planted = write_fer2013_csv(root / "fer2013.csv")
    splits, report = _build(root, tmp_path)

    assert report["layout"] == "fer2013-csv" and report["num_classes"] == 7
    assert {s: len(d) for s, d in splits.items()} == planted["counts"]
    assert report["split_origin"] == {s: "source" for s in ("train", "validation", "test")}
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == [f"fer2013.csv:row {n}" for n in sorted(planted["bad_rows"])]
    for row, fragment in planted["bad_rows"].items():
        assert fragment in skipped[f"fer2013.csv:row {row}"]

    first = splits["train"][0]
    assert first["source"] == "fer2013.csv:row 2"
    assert first["image"].mode == "L" and first["image"].size == (48, 48)
    # emotion 0 (Angry) in row 2 -> canonical "anger"
    assert splits["train"].features["label"].int2str(first["label"]) == "anger"
    names = class_names(7)
    for row in splits["train"]:
        row_number = int(row["source"].rsplit(" ", 1)[1])
        code = (row_number - 2) % 7  # the fixture writes emotion = index % 7
        assert names[row["label"]] == FER2013_CODES[code]


def test_csv_pixels_round_trip(tmp_path):
    path = tmp_path / "fer2013.csv"
    pixels = [(i * 7) % 256 for i in range(2304)]
    path.write_text("emotion,pixels,Usage\n" + f"3,{' '.join(map(str, pixels))},Training\n" * 2)
    splits, _ = _build(path, tmp_path)  # the CSV file itself is accepted as --data-dir
    rows = [*splits["train"], *splits["validation"]]
    assert [list(r["image"].getdata()) for r in rows] == [pixels, pixels]


def test_csv_without_usage_carves_validation(tmp_path):
    path = tmp_path / "fer2013.csv"
    lines = ["emotion,pixels"] + [f"{i % 7},{' '.join(['9'] * 2304)}" for i in range(28)]
    path.write_text("\n".join(lines) + "\n")
    splits, report = _build(path, tmp_path, val_fraction=0.25)
    assert report["split_origin"]["validation"].startswith("carved from train")
    assert len(splits["validation"]) == 7 and len(splits["train"]) == 21  # 1 of 4 per class


def test_csv_missing_column_names_it(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixel_values,Usage\n0,1 2 3,Training\n")
    with pytest.raises(ValueError, match=r"has no 'pixels' column.*emotion,pixels,Usage"):
        _build(path, tmp_path)


def test_folder_layout_keeps_the_val_split(tmp_path):
    root = tmp_path / "fer"
    write_class_tree(
        root,
        {
            "train/angry": 4,
            "train/happy": 6,
            "train/disgust": 1,
            "val/angry": 2,
            "val/happy": 1,
            "test/happy": 2,
        },
    )
    splits, report = _build(root, tmp_path, resample="oversample")
    assert report["layout"] == "fer2013-folders"
    after = report["class_counts_after"]
    assert after["train"] == {
        **dict.fromkeys(class_names(7), 0),
        "anger": 6,
        "happy": 6,
        "disgust": 6,
    }
    assert report["class_counts_before"]["validation"] == after["validation"]
    assert sorted(splits["validation"]["source"]) == [
        "val/angry/img_000.jpg",
        "val/angry/img_001.jpg",
        "val/happy/img_000.jpg",
    ]
    assert len(splits["test"]) == 2


def test_unknown_layout(tmp_path):
    (tmp_path / "fer" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"Unknown FER2013 layout.*fer2013.csv.*train/"):
        _build(tmp_path / "fer", tmp_path)
