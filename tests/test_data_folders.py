"""Class-folder trees: `prepare folder` and `load_class_folders` (used by `fer-hf evaluate`)."""

import datasets
import pytest
from data_fixtures import write_class_tree

from fer_hf.data import build_dataset, load_class_folders
from fer_hf.labels import class_names


def _build(root, tmp_path, **kwargs):
    return build_dataset("folder", root, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_bare_tree_with_synonyms(tmp_path):
    root = tmp_path / "faces"
    write_class_tree(root, {"Angry": 5, "happiness": 5, "Sadness": 4})
    (root / "Angry" / "README.txt").write_text("notes")
    (root / "Angry" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    splits, report = _build(root, tmp_path, val_fraction=0.2)
    assert report["num_classes"] == 7 and report["layout"] == "class-folders"
    assert report["class_counts_before"]["validation"] == {
        **dict.fromkeys(class_names(7), 0),
        "anger": 1,
        "happy": 1,
        "sad": 1,
    }
    assert len(splits["train"]) + len(splits["validation"]) == 14
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert "not an image file (extension '.txt')" in skipped["Angry/README.txt"]
    assert "not an image" in skipped["Angry/broken.jpg"]


def test_contempt_folder_selects_eight_classes(tmp_path):
    root = tmp_path / "faces"
    write_class_tree(root, {"train/neutral": 3, "train/contempt": 3, "test/contempt": 1})
    _, report = _build(root, tmp_path)
    assert report["num_classes"] == 8 and report["class_counts_before"]["train"]["contempt"] >= 2
    _, report7 = _build(root, tmp_path, num_classes=7)
    assert report7["excluded"] == {"contempt": 4}


def test_unknown_class_folder_is_named(tmp_path):
    root = tmp_path / "faces"
    write_class_tree(root, {"happy": 2, "bored": 2})
    with pytest.raises(ValueError, match=r"Class folder\(s\) \['bored'\] .* match no label"):
        _build(root, tmp_path)


def test_load_class_folders_uses_the_given_label_order(tmp_path):
    root = tmp_path / "eval"
    write_class_tree(root, {"angry": 2, "happy": 3}, mode="RGB")
    names = ["happy", "anger", "sad"]  # e.g. a model's id2label
    dataset = load_class_folders(root, names, cache_dir=str(tmp_path / "cache"))
    assert isinstance(dataset, datasets.Dataset)
    assert dataset.features["label"].names == names
    by_source = dict(zip(dataset["source"], dataset["label"], strict=True))
    assert by_source["angry/img_000.jpg"] == 1 and by_source["happy/img_000.jpg"] == 0
    assert dataset[0]["image"].mode == "RGB"


def test_load_class_folders_with_splits(tmp_path):
    root = tmp_path / "eval"
    write_class_tree(root, {"test/fearful": 2, "val/surprised": 1})
    splits = load_class_folders(root, class_names(7), cache_dir=str(tmp_path / "cache"))
    assert isinstance(splits, datasets.DatasetDict) and set(splits) == {"test", "validation"}
    assert splits["test"]["label"] == [class_names(7).index("fear")] * 2


def test_load_class_folders_errors(tmp_path):
    root = tmp_path / "eval"
    write_class_tree(root, {"happy": 1, "contempt": 1})
    with pytest.raises(ValueError, match=r"\['contempt'\] in .* match no label"):
        load_class_folders(root, class_names(7))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_class_folders(tmp_path / "nowhere", class_names(7))
    with pytest.raises(TypeError, match="non-empty list of names"):
        load_class_folders(root, "happy")
