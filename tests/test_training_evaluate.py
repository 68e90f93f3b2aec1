"""`fer-hf evaluate` on generated data: metrics.json + confusion_matrix.png, and input errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_training import prepared_dataset, tiny_model_overrides, write_class_tree
from PIL import Image

from fer_hf.cli import main
from fer_hf.labels import class_names


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared_dataset(tmp_path_factory.mktemp("data"))


def model_folder(root: Path, num_classes: int = 7, valence_arousal: bool = False) -> Path:
    from fer_hf.models import build_model

    torch.manual_seed(0)
    model, processor = build_model(
        "factorized",
        image_size=32,
        num_classes=num_classes,
        valence_arousal=valence_arousal,
        **tiny_model_overrides(),
    )
    folder = root / f"model{num_classes}{'va' if valence_arousal else ''}"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_evaluate_prepared_split(data, tmp_path, capsys):
    model = model_folder(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(model), str(data), "--output", str(out), "--batch-size", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    names = list(class_names(7))
    assert metrics["n"] == 21 and metrics["split"] == "test"
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    assert metrics["confusion_matrix"]["labels"] == names
    assert matrix.shape == (7, 7) and matrix.sum() == 21 and (matrix.sum(axis=1) == 3).all()
    # Recomputed by hand from the confusion matrix (rows true, columns predicted).
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 21)
    recall = np.diag(matrix) / 3
    assert list(metrics["per_class_recall"]) == names
    assert list(metrics["per_class_recall"].values()) == pytest.approx(recall.tolist())
    assert metrics["balanced_accuracy"] == pytest.approx(recall.mean())
    assert 0 <= metrics["macro_f1"] <= 1
    assert not any(key.startswith("valence") for key in metrics)
    with Image.open(out / "confusion_matrix.png") as image:
        assert image.format == "PNG" and image.width > 300
    printed = capsys.readouterr().out
    assert "balanced_accuracy" in printed and "recall anger" in printed


def test_evaluate_flip_tta_and_valence_arousal(tmp_path):
    # A class-folder tree with split folders; `val` is found for --split validation too.
    tree = write_class_tree(tmp_path / "tree", {"train": (1,) * 7, "val": (2,) * 7})
    model = model_folder(tmp_path, valence_arousal=True)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            str(model),
            str(tree),
            "--split",
            "validation",
            "--tta",
            "flip",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["n"] == 14 and metrics["tta"] == "flip" and metrics["data_kind"] == "class-folders"
    )
    # The folders carry no valence/arousal: none reported even though the model predicts them.
    assert "valence_rmse" not in metrics


def test_evaluate_bare_class_tree_with_synonyms(tmp_path):
    tree = write_class_tree(tmp_path / "tree", {"all": (2,) * 7})
    bare = tree / "all"
    (bare / "anger").rename(bare / "Angry")  # synonyms map to the schema
    metrics_code = main(
        ["evaluate", str(model_folder(tmp_path)), str(bare), "--output", str(tmp_path / "eval")]
    )
    assert metrics_code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 14 and metrics["split"] is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("labels", r"The model predicts \[.*'contempt'\] but .* is labelled"),
        ("split", r"has no split 'nope'; it has \['test', 'train', 'validation'\]"),
        ("schema", "is a `datasets` folder but not a fer-hf prepared dataset"),
        ("folder", r"Class folder\(s\) \['bored'\]"),
        ("tta", None),
    ],
)
def test_evaluate_input_errors(data, tmp_path, capsys, case, message):
    model = model_folder(tmp_path, num_classes=8 if case == "labels" else 7)
    target, extra = str(data), []
    if case == "split":
        extra = ["--split", "nope"]
    elif case == "schema":
        import datasets

        target = str(tmp_path / "plain")
        datasets.DatasetDict({"test": datasets.Dataset.from_dict({"x": [1]})}).save_to_disk(target)
    elif case == "folder":
        tree = write_class_tree(tmp_path / "tree", {"x": (1,) * 7}) / "x"
        (tree / "bored").mkdir()
        target = str(tree)
    elif case == "tta":
        extra = ["--tta", "rotate"]
    if case == "tta":  # argparse refuses it before any work
        with pytest.raises(SystemExit):
            main(["evaluate", str(model), target, "--output", str(tmp_path / "o"), *extra])
        return
    code = main(["evaluate", str(model), target, "--output", str(tmp_path / "o"), *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_evaluate_missing_model(tmp_path, capsys):
    assert (
        main(["evaluate", str(tmp_path / "none"), str(tmp_path), "--output", str(tmp_path / "o")])
        == 2
    )
    assert "has no config.json" in capsys.readouterr().err


def test_evaluate_reports_valence_arousal(tmp_path):
    from fer_hf.data import load_prepared, prepare

    tree = write_class_tree(tmp_path / "tree", {"train": (2,) * 7, "test": (2,) * 7})
    prepare("folder", data_dir=tree, output=tmp_path / "prepared", seed=0)
    # The same folder with valence/arousal on the test split, as AffectNet provides them.
    splits = load_prepared(tmp_path / "prepared")
    known = np.linspace(-0.9, 0.9, len(splits["test"]))
    splits["test"] = splits["test"].map(
        lambda record, i: {"valence": known[i], "arousal": -known[i]}, with_indices=True
    )
    affect = tmp_path / "affect"
    splits.save_to_disk(str(affect))
    shutil.copy(tmp_path / "prepared" / "fer_hf_dataset.json", affect)

    model = model_folder(tmp_path, valence_arousal=True)
    assert main(["evaluate", str(model), str(affect), "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name in ("valence", "arousal"):
        assert metrics[f"{name}_n"] == 14
        assert metrics[f"{name}_rmse"] > 0 and -1 <= metrics[f"{name}_ccc"] <= 1
        assert 0 <= metrics[f"{name}_sagr"] <= 1
