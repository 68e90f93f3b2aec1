"""`fer-hf average`: weights averaged exactly, batch-norm statistics recomputed from the data, a
folder that loads and releases, and refusals that name the folder and touch nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from helpers_training import prepared_dataset, tiny_model_overrides
from safetensors.torch import load_file

from fer_hf.cli import main
from fer_hf.training.averaging import average_models

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared_dataset(tmp_path_factory.mktemp("data"))


def model_folder(root: Path, name: str, kind: str, seed: int, num_classes: int = 7) -> Path:
    from fer_hf.models import build_model

    torch.manual_seed(seed)
    model, processor = build_model(
        kind, image_size=32, num_classes=num_classes, **tiny_model_overrides(kind)
    )
    for module in model.modules():  # distinct, non-trivial statistics in every source
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(5, 10)
            module.running_var.uniform_(5, 10)
    folder = root / name
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def snapshot(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_vit_weights_are_the_weighted_mean_and_need_no_data(tmp_path):
    a = model_folder(tmp_path, "a", "vit", seed=1)
    b = model_folder(tmp_path, "b", "vit", seed=2)
    before = snapshot(a, b)
    record = average_models([a, b], tmp_path / "avg", weights=[1, 3])
    assert record["weights"] == [0.25, 0.75] and record["batch_norm_recomputed"] is None
    wa, wb, avg = weights_of(a), weights_of(b), weights_of(tmp_path / "avg")
    assert set(avg) == set(wa)
    for name, tensor in wa.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(avg[name], 0.25 * tensor + 0.75 * wb[name])
    assert snapshot(a, b) == before  # the sources are untouched

    from fer_hf.models import load_model_folder

    model, processor = load_model_folder(tmp_path / "avg")
    pixels = processor(
        images=[torch.zeros(32, 32, dtype=torch.uint8).numpy()] * 2, return_tensors="pt"
    )
    assert model(pixel_values=pixels["pixel_values"]).logits.shape == (2, 7)
    summary = json.loads((tmp_path / "avg" / "train_summary.json").read_text())
    assert summary == {"weight_average": record}
    for name in json.loads((tmp_path / "avg" / "config.json").read_text())["auto_map"].values():
        module = name.split(".")[0]
        assert (tmp_path / "avg" / f"{module}.py").is_file()  # loads with trust_remote_code


def test_batch_norm_statistics_come_from_the_training_images(tmp_path, data):
    from fer_hf.data import load_eval_split
    from fer_hf.models import load_model_folder
    from fer_hf.training.transforms import FerTransform, collate

    a = model_folder(tmp_path, "a", "factorized", seed=1)
    b = model_folder(tmp_path, "b", "factorized", seed=2)
    record = average_models(
        [a, b], tmp_path / "avg", data=data, bn_images=64, batch_size=16, seed=3
    )
    assert record["batch_norm_recomputed"]["images"] == 64
    wa, wb, avg = weights_of(a), weights_of(b), weights_of(tmp_path / "avg")
    for name, tensor in wa.items():
        if tensor.is_floating_point() and "running" not in name:
            torch.testing.assert_close(avg[name], (tensor + wb[name]) / 2)

    # By hand: the first batch-norm layer's input over the same 64 images, in eval mode.
    model, processor = load_model_folder(tmp_path / "avg")
    first_bn = next(
        m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    )
    dataset, _ = load_eval_split(data, "train", model.config.id2label.values())
    sample = dataset.shuffle(seed=3).select(range(64)).with_transform(FerTransform(processor))
    pixels = collate([sample[i] for i in range(64)])["pixel_values"]
    seen = []
    first_bn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        model(pixel_values=pixels)
    expected = seen[0].mean(dim=(0, 2, 3))
    torch.testing.assert_close(first_bn.running_mean, expected, atol=1e-5, rtol=1e-4)
    # Not the mean of the sources' statistics (which were set to 5-10 above).
    key = next(k for k in wa if k.endswith("running_mean"))
    assert not torch.allclose(avg[key], (wa[key] + wb[key]) / 2, atol=0.5)


def test_one_folder_is_copied_with_its_batch_norm_statistics_recomputed(tmp_path, data, capsys):
    a = model_folder(tmp_path, "a", "factorized", seed=1)
    before = snapshot(a, data)
    out = tmp_path / "refreshed"
    argv = ["average", str(a), "--output", str(out), "--data", str(data), "--bn-images", "32"]
    assert main(argv) == 0
    assert "recomputed on 32 train images" in capsys.readouterr().out
    wa, new = weights_of(a), weights_of(out)
    assert set(new) == set(wa)
    for name, tensor in wa.items():
        if "running" in name:  # the sources' statistics were set to 5-10
            assert not torch.allclose(new[name], tensor, atol=0.5), name
        elif tensor.is_floating_point():  # batch counters are the recomputation's
            torch.testing.assert_close(new[name], tensor)
    record = json.loads((out / "train_summary.json").read_text())["weight_average"]
    assert record["sources"] == [str(a.resolve())] and record["weights"] == [1.0]
    assert snapshot(a, data) == before


def test_cli_average_then_release(tmp_path, data, capsys):
    from fer_hf.release import build_release

    a = model_folder(tmp_path, "cycle-a", "factorized", seed=1)
    b = model_folder(tmp_path, "cycle-b", "factorized", seed=2)
    summary = {  # the part of train.py's summary a card reads, and per-run fields
        "model_kind": "factorized",
        "dataset": {"name": "folder", "path": str(data)},
        "hyperparameters": {"learning_rate": 0.02},
        "best_metric": 0.5,
        "best_model_checkpoint": str(a / "checkpoint-3"),
        "train_runtime_s": 12.0,
    }
    (a / "train_summary.json").write_text(json.dumps(summary))
    out = tmp_path / "soup"
    argv = ["average", str(a), str(b), "--output", str(out), "--data", str(data)]
    assert main([*argv, "--bn-images", "32", "--weights", "2,1"]) == 0
    printed = capsys.readouterr().out
    assert "0.6667" in printed and "recomputed on 32 train images" in printed
    assert main([*argv, "--bn-images", "32"]) == 2  # not empty now
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--bn-images", "32", "--overwrite"]) == 0

    report = build_release(
        out, tmp_path / "release", data, onnx=False, license="cc-by-4.0", measure_speed=False
    )
    assert report["passed"]
    card = (tmp_path / "release" / "README.md").read_text()
    assert "average of 2 runs" in card and "`cycle-a`" in card and "`cycle-b`" in card
    assert str(tmp_path) not in card  # folder names only, never a path of this machine
    assert "recomputed on 32 train images" in card
    assert "checkpoint kept" not in card  # the average is no run's best checkpoint
    released = json.loads((tmp_path / "release" / "train_summary.json").read_text())
    assert released["hyperparameters"] == {"learning_rate": 0.02}
    assert not {"best_metric", "best_model_checkpoint", "train_runtime_s"} & set(released)
    assert released["weight_average"]["sources"] == [str(a.resolve()), str(b.resolve())]


@pytest.mark.parametrize(
    "case, message",
    [
        ("one-without-batch-norm", "no batch-norm layers"),
        ("twice", "listed twice"),
        ("architecture", "not the same architecture"),
        ("labels", "label schema"),
        ("no-data", "pass --data"),
        ("weights-count", "--weights has 1 values for 2"),
        ("weights-negative", "finite numbers >= 0"),
        ("weights-zero", "must not all be 0"),
        ("overlap", "overlaps the model folder"),
        ("missing", "does not exist"),
    ],
)
def test_refusals_name_the_problem_and_touch_nothing(tmp_path, data, case, message):
    a = model_folder(tmp_path, "a", "factorized", seed=1)
    b = {
        "architecture": lambda: model_folder(tmp_path, "b", "vit", seed=2),
        "labels": lambda: model_folder(tmp_path, "b", "factorized", seed=2, num_classes=8),
    }.get(case, lambda: model_folder(tmp_path, "b", "factorized", seed=2))()
    folders, kwargs, output = [a, b], {"data": data}, tmp_path / "out"
    if case == "one-without-batch-norm":
        folders = [model_folder(tmp_path, "v", "vit", seed=3)]
    elif case == "twice":
        folders = [a, a]
    elif case == "no-data":
        kwargs = {}
    elif case.startswith("weights"):
        kwargs["weights"] = {"weights-count": [1], "weights-negative": [1, -1]}.get(case, [0, 0])
    elif case == "overlap":
        output = a / "inside"
    elif case == "missing":
        folders = [a, tmp_path / "nowhere"]
    before = snapshot(a, b, data)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        average_models(folders, output, **kwargs)
    if case in ("architecture", "labels"):
        assert str(b) in str(err.value)
    assert snapshot(a, b, data) == before
    assert not output.exists()


def test_cli_rejects_bad_weights_text(tmp_path, data, capsys):
    a = model_folder(tmp_path, "a", "factorized", seed=1)
    b = model_folder(tmp_path, "b", "factorized", seed=2)
    argv = ["average", str(a), str(b), "--output", str(tmp_path / "o"), "--weights", "1,x"]
    assert main(argv) == 2
    assert "comma-separated numbers" in capsys.readouterr().err


def test_a_checkpoint_folder_takes_its_runs_summary_and_only_a_checkpoint_does(tmp_path):
    run = tmp_path / "run"
    a = model_folder(run, "checkpoint-500", "vit", seed=1)
    b = model_folder(run, "checkpoint-1000", "vit", seed=2)
    started = {  # what train.py writes when a run starts
        "model_kind": "vit",
        "dataset": {"name": "fer2013", "path": "prepared/fer2013"},
        "command": "train.py x.yaml",
        "output_dir": str(run),
        "in_progress": True,
    }
    (run / "train_summary.json").write_text(json.dumps(started))
    record = average_models([a, b], tmp_path / "avg")
    summary = json.loads((tmp_path / "avg" / "train_summary.json").read_text())
    assert record["summary_from"] == str((run / "train_summary.json").resolve())
    assert summary == {
        "model_kind": "vit",
        "dataset": started["dataset"],
        "weight_average": record,
    }
    from fer_hf.hub.model_card import _average_sentence

    card = _average_sentence(record)
    assert "average of 2 checkpoints of one run `run`" in card and "`checkpoint-1000`" in card
    assert str(tmp_path) not in card  # folder names only, never a path of the training machine
    later = model_folder(tmp_path / "run2", "checkpoint-800", "vit", seed=4)
    card = _average_sentence({"sources": [str(a), str(later)], "weights": [0.5, 0.5]})
    assert "average of 2 checkpoints of 2 runs" in card and "`run2/checkpoint-800`" in card
    release = model_folder(tmp_path, "fer2013-vit", "vit", seed=5)  # a release beside them
    card = _average_sentence({"sources": [str(release), str(a), str(later)], "weights": [2, 1, 1]})
    assert "average of 3 models of this architecture" in card
    assert "`fer2013-vit` (2.00), `run/checkpoint-500` (1.00), `run2/checkpoint-800`" in card
    assert "hyperparameters below are those of `fer2013-vit`'s run" in card
    other = model_folder(run, "soup", "vit", seed=3)  # not a checkpoint: no borrowed summary
    record = average_models([other, a], tmp_path / "avg2")
    assert record["summary_from"] is None
    assert json.loads((tmp_path / "avg2" / "train_summary.json").read_text()) == {
        "weight_average": record
    }
