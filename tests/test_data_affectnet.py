"""AffectNet, both releases: layout detection, labels, valence/arousal, crops and bad records."""

import math

import numpy as np
import pytest
from data_fixtures import coordinate_image, write_affectnet_npy, write_affectnet_original

from fer_hf.data import build_dataset, load_source
from fer_hf.data.records import SkipRecord, face_crop_box
from fer_hf.labels import class_names


def _build(root, tmp_path, **kwargs):
    return build_dataset("affectnet", root, cache_dir=str(tmp_path / "cache"), **kwargs)


def _all_sources(splits):
    return {split: set(ds["source"]) for split, ds in splits.items()}


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_original_release(tmp_path, header):
    root = tmp_path / "affectnet"
    expected = write_affectnet_original(root, header=header)
    splits, report = _build(root, tmp_path)

    assert report["layout"] == "affectnet-original"
    assert report["num_classes"] == 8 and list(splits) == ["train", "validation", "test"]
    assert len(splits["train"]) + len(splits["validation"]) == expected["train_good"]
    assert len(splits["test"]) == expected["test_good"]  # official validation -> test
    assert report["split_origin"]["validation"].startswith("carved from train")
    assert report["excluded"] == expected["excluded"]

    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    rows = [
        f"Manually_Annotated_file_lists/training.csv:row {n}" for n in expected["train_bad_rows"]
    ]
    rows += [
        f"Manually_Annotated_file_lists/validation.csv:row {n}" for n in expected["test_bad_rows"]
    ]
    assert sorted(skipped) == sorted(rows) and report["num_skipped"] == len(rows)
    reasons = " | ".join(skipped.values())
    for fragment in [
        "file is missing",
        "0 bytes",
        "not an image",
        "truncated or corrupt",
        "lies outside the 60x60 image",
        "valence is -2",
        "arousal 'nan'",
        "unknown expression code 12",
        "expected 9 fields, got 4",
        "expression 'happy' is not a number",
    ]:
        assert fragment in reasons

    merged = {}
    for split in ("train", "validation", "test"):
        for row in splits[split]:
            merged[row["source"]] = row
    coords = merged["Manually_Annotated_Images/1/coords.png"]
    assert coords["label"] == class_names(8).index("happy")
    assert coords["valence"] == pytest.approx(0.75) and coords["arousal"] == pytest.approx(0.125)
    # the crop is exactly the face box (x=20, y=10, w=40, h=30) of the coordinate image
    assert coords["image"].size == (40, 30)
    assert coords["image"].getpixel((0, 0))[:2] == (20, 10)
    assert coords["image"].getpixel((39, 29))[:2] == (59, 39)
    contempt = merged["Manually_Annotated_Images/2/f7.jpg"]
    assert contempt["label"] == 7 and contempt["valence"] == pytest.approx(-0.5)
    clamped = merged["Manually_Annotated_Images/2/f12.jpg"]
    assert clamped["image"].size == (10, 10)  # box (50, 50, 30, 30) clamped to the 60x60 image


def test_no_record_in_two_splits(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_original(root)
    sources = _all_sources(_build(root, tmp_path)[0])
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]


def test_seven_classes_exclude_contempt(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_original(root)
    splits, report = _build(root, tmp_path, num_classes=7)
    assert splits["train"].features["label"].names == list(class_names(7))
    assert report["excluded"]["contempt"] == 2  # one train row, one validation.csv row
    assert 7 not in set(splits["train"]["label"]) | set(splits["test"]["label"])


def test_margin_grows_the_crop_and_clamps(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_original(root)
    splits, _ = _build(root, tmp_path, margin=0.25)
    rows = {r["source"]: r for s in splits.values() for r in s}
    coords = rows["Manually_Annotated_Images/1/coords.png"]["image"]
    # x: 20 - 10 .. 60 + 10; y: 10 - 7.5 -> 2 .. 40 + 7.5 -> 48
    assert coords.size == (60, 46)
    assert coords.getpixel((0, 0))[:2] == (10, 2)


def test_face_crop_box_geometry():
    assert face_crop_box((20, 10, 40, 30), (100, 80)) == (20, 10, 60, 40)
    assert face_crop_box((20, 10, 40, 30), (100, 80), margin=0.1) == (16, 7, 64, 43)
    assert face_crop_box((-10, -10, 50, 50), (30, 30)) == (0, 0, 30, 30)  # clamped
    with pytest.raises(SkipRecord, match="lies outside the 100x80 image"):
        face_crop_box((100, 0, 10, 10), (100, 80))
    with pytest.raises(SkipRecord, match="has no area"):
        face_crop_box((1, 1, 0, 10), (100, 80))
    with pytest.raises(SkipRecord, match="has no area"):
        face_crop_box((1, 1, math.nan, 10), (100, 80))


def test_image_size_resizes_the_shorter_side(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_original(root)
    splits, _ = _build(root, tmp_path, image_size=16)
    rows = {r["source"]: r for s in splits.values() for r in s}
    assert rows["Manually_Annotated_Images/1/coords.png"]["image"].size == (21, 16)  # 40x30
    assert rows["Manually_Annotated_Images/2/f0.jpg"]["image"].size == (16, 16)


def test_later_release(tmp_path):
    root = tmp_path / "affectnet"
    planted = write_affectnet_npy(root)
    splits, report = _build(root, tmp_path)
    assert report["layout"] == "affectnet-npy"
    assert report["excluded"] == planted["excluded"]
    assert {s["file"] for s in report["skipped"]} == planted["bad_files"]
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert "valence is -2" in reasons["train_set/images/202.jpg"]
    assert "_exp.npy is missing" in reasons["train_set/images/200.jpg"]
    assert "no image" in reasons["train_set/annotations/203_exp.npy"]
    got = {r["source"]: r for split in ("train", "validation") for r in splits[split]}
    assert set(got) == set(planted["expected"]["train"])
    assert {r["source"] for r in splits["test"]} == set(planted["expected"]["test"])
    for source, (code, valence, arousal) in planted["expected"]["train"].items():
        assert got[source]["label"] == code
        assert got[source]["valence"] == pytest.approx(valence, abs=1e-6)
        assert got[source]["arousal"] == pytest.approx(arousal, abs=1e-6)
        assert got[source]["image"].size == (40, 40)  # already cropped: kept as is


def test_valence_arousal_are_float32(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_npy(root)
    splits = load_source("affectnet", root)
    assert splits["train"].features["valence"].dtype == "float32"
    values = np.asarray(splits["train"].with_format("numpy")["valence"])
    assert values.dtype == np.float32 and np.isfinite(values).all()


def test_missing_column_is_structural(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_original(root)
    csv = root / "Manually_Annotated_file_lists" / "training.csv"
    csv.write_text(csv.read_text().replace("valence,", "valance,", 1))
    with pytest.raises(
        ValueError, match=r"training.csv has no 'valence' column.*expected the columns"
    ):
        _build(root, tmp_path)


def test_unknown_layout_lists_what_was_expected(tmp_path):
    (tmp_path / "affectnet" / "photos").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"Unknown AffectNet layout.*train_set/ and val_set/.*photos"
    ):
        _build(tmp_path / "affectnet", tmp_path)


def test_every_row_bad_is_an_error(tmp_path):
    root = tmp_path / "affectnet"
    (root / "Manually_Annotated_Images").mkdir(parents=True)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir()
    coordinate_image(10, 10).save(root / "Manually_Annotated_Images" / "a.png")
    (lists / "training.csv").write_text("a.png,0,0,5,5,,9,-2,-2\nmissing.png,0,0,5,5,,1,0,0\n")
    with pytest.raises(ValueError, match=r"No usable records .* 1 skipped, 1 excluded"):
        _build(root, tmp_path)
