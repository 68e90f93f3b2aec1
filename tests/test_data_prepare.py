"""`prepare` and `fer-hf prepare` end to end: outputs, report, plots, loading, untouched input."""

import json
import os
from pathlib import Path

import datasets
import pytest
from data_fixtures import tree_digest, write_affectnet_npy, write_class_tree

from fer_hf.cli import main
from fer_hf.data import format_class_table, load_prepared, prepare
from fer_hf.labels import class_names

FER2013_DIR = Path(
    os.environ.get("FER_HF_FER2013", Path(__file__).parents[2] / "shared/data/fer2013")
)
LAYOUT = {"train/angry": 6, "train/happy": 9, "train/disgust": 2, "val/angry": 2, "val/happy": 3}


@pytest.fixture
def fer_tree(tmp_path):
    root = tmp_path / "raw"
    write_class_tree(root, LAYOUT)
    return root


def test_cli_end_to_end(fer_tree, tmp_path, capsys):
    before = tree_digest(fer_tree)
    out = tmp_path / "prepared"
    code = main(
        [
            "prepare",
            "fer2013",
            "--data-dir",
            str(fer_tree),
            "--output",
            str(out),
            "--resample",
            "oversample",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "train (oversample)" in printed and "Wrote" in printed
    assert tree_digest(fer_tree) == before  # the input folder is never modified
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",  # the dataset card (schema, recipe, class table; no images)
        "class_distribution.png",
        "dataset_dict.json",
        "fer_hf_dataset.json",
        "prepare_report.json",
        "train",
        "validation",
    ]  # no valence_arousal.png (FER2013 has none) and no build folder left behind

    assert "fer-hf prepare fer2013" in (out / "README.md").read_text()
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["num_skipped"] == 0 and report["skipped"] == []
    assert report["class_counts_before"]["train"]["happy"] == 9
    assert set(report["class_counts_after"]["train"].values()) == {0, 9}
    meta = json.loads((out / "fer_hf_dataset.json").read_text())
    assert meta["format"] == "fer-hf-prepared" and meta["version"] == 1
    assert meta["class_names"] == list(class_names(7)) and meta["seed"] == 3

    splits = load_prepared(out)
    assert len(splits["train"]) == 27 and len(splits["validation"]) == 5
    labels = splits["train"]["label"]
    assert sorted({labels.count(i) for i in set(labels)}) == [9]
    assert not set(splits["train"]["source"]) & set(splits["validation"]["source"])
    assert (out / "class_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_build_leaves_no_output(tmp_path):
    raw = tmp_path / "raw"
    write_class_tree(raw, {"train/happy": 1})
    with pytest.raises(ValueError, match="Too few training records"):
        prepare("folder", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = main(
        [
            "prepare",
            "folder",
            "--data-dir",
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "fer-hf prepare: error: Data folder" in capsys.readouterr().err


def test_valence_arousal_plot_and_metadata(tmp_path):
    raw = tmp_path / "affectnet"
    write_affectnet_npy(raw)
    report = prepare("affectnet", raw, tmp_path / "out", image_size=20)
    assert report["plots"] == ["class_distribution.png", "valence_arousal.png"]
    assert report["num_with_valence_arousal"] == 13
    splits = load_prepared(tmp_path / "out")
    assert list(splits) == ["train", "validation", "test"]
    assert splits["test"][0]["image"].size == (20, 20)
    assert report["num_skipped"] == 5
    table = format_class_table(report)
    assert "5 skipped, 1 excluded {'uncertain': 1}" in table and "contempt" in table


def test_same_seed_same_dataset_and_num_proc_does_not_matter(fer_tree, tmp_path):
    first = prepare("folder", fer_tree, tmp_path / "a", resample="sqrt", seed=5)
    second = prepare("folder", fer_tree, tmp_path / "b", resample="sqrt", seed=5, num_proc=2)
    assert first["class_counts_after"] == second["class_counts_after"]
    a, b = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "b")
    assert a["train"]["source"] == b["train"]["source"]
    assert a["validation"]["source"] == b["validation"]["source"]


def test_output_rules(fer_tree, tmp_path):
    with pytest.raises(ValueError, match="overlaps the data folder"):
        prepare("folder", fer_tree, fer_tree / "prepared")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a fer-hf prepared dataset.*refusing to overwrite"):
        prepare("folder", fer_tree, busy)
    assert (busy / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    prepare("folder", fer_tree, out)
    report = prepare("folder", fer_tree, out, resample="undersample")  # replaces the earlier one
    assert report["num_records"]["train"] == len(load_prepared(out)["train"])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"source": "afectnet"}, ValueError, "Unknown dataset 'afectnet'; expected one of"),
        ({"num_classes": 6}, ValueError, r"`num_classes` must be one of \(7, 8\)"),
        ({"resample": "smote"}, ValueError, "Unknown resampling 'smote'"),
        ({"resample": "sqrt", "target_count": 5}, ValueError, "needs resample 'oversample'"),
        ({"val_fraction": 0.0}, ValueError, r"`val_fraction` must be in \(0, 1\), got 0.0"),
        ({"num_proc": 0}, ValueError, "`num_proc` must be >= 1, got 0"),
        ({"image_size": 2.5}, TypeError, "`image_size` must be an int, got float"),
        ({"margin": -0.1}, ValueError, "`margin` must be a finite number >= 0"),
    ],
)
def test_argument_errors(fer_tree, tmp_path, kwargs, error, message):
    arguments = {"source": "folder", "data_dir": fer_tree, "output": tmp_path / "out", **kwargs}
    with pytest.raises(error, match=message):
        prepare(**arguments)
    assert not (tmp_path / "out").exists()


def test_load_prepared_rejects_other_folders(fer_tree, tmp_path):
    with pytest.raises(ValueError, match="not a fer-hf prepared dataset: no fer_hf_dataset.json"):
        load_prepared(fer_tree)
    with pytest.raises(FileNotFoundError):
        load_prepared(tmp_path / "nowhere")
    out = tmp_path / "out"
    prepare("folder", fer_tree, out)
    meta_path = out / "fer_hf_dataset.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(ValueError, match="schema version 2; this fer-hf reads version 1"):
        load_prepared(out)
    meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(ValueError, match="format 'something-else', expected 'fer-hf-prepared'"):
        load_prepared(out)
    meta_path.write_text(json.dumps(meta))
    other = load_prepared(out).remove_columns("valence")
    other.save_to_disk(str(tmp_path / "other"))
    (tmp_path / "other" / "fer_hf_dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"differ from the fer-hf schema in \['valence'\]"):
        load_prepared(tmp_path / "other")
    assert isinstance(load_prepared(out), datasets.DatasetDict)


@pytest.mark.slow
@pytest.mark.skipif(not FER2013_DIR.is_dir(), reason=f"real FER2013 not found at {FER2013_DIR}")
def test_real_fer2013_oversampled(tmp_path):
    before = {p: len(os.listdir(FER2013_DIR / p)) for p in ("train/happy", "val/disgust")}
    report = prepare("fer2013", FER2013_DIR, tmp_path / "out", resample="oversample", num_proc=2)
    train_counts = set(report["class_counts_after"]["train"].values())
    assert train_counts == {7215} and report["num_skipped"] == 0
    assert report["class_counts_before"]["validation"] == report["class_counts_after"]["validation"]
    assert sum(report["class_counts_after"]["validation"].values()) == 3589
    assert before == {p: len(os.listdir(FER2013_DIR / p)) for p in before}
    splits = load_prepared(tmp_path / "out")
    assert len(splits["train"]) == 7 * 7215 and splits["validation"][0]["image"].size == (48, 48)
