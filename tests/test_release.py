"""`fer-hf release`: a tiny trained run -> release folder (fp16 weights that load as fp32,
metrics from the release weights, onnx/, card); publish --dry-run on it; refusals touch nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_training import prepared_dataset
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open

from fer_hf import release as release_module
from fer_hf.cli import main
from fer_hf.release import build_release

LICENSE = "cc-by-4.0"  # the generated data's source ("folder") has no licence fer-hf knows
# Max |logit| difference between the release (weights stored in fp16) and the run (fp32): fp16
# keeps 11 significant bits, so each weight moves by at most 2**-11 of its size.
FP16_LOGIT_ATOL = 1e-3
TINY_BACKBONE = (
    '{"hidden_sizes": [8, 16], "depths": [1, 1], "strides": [1, 2], "expand_ratios": [1, 2], '
    '"stem_channels": 8, "head_channels": 16}'
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    """A finished train.py run: 3 steps of the tiny factorized model."""
    from fer_hf.training.arguments import parse_args
    from fer_hf.training.run import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "run"
    argv = [
        "--dataset", str(data), "--output_dir", str(out), "--image_size", "32",
        "--model_overrides", TINY_BACKBONE, "--use_cpu", "true", "--report_to", "none",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--learning_rate", "0.01", "--max_steps", "3", "--save_total_limit", "1",
    ]  # fmt: skip
    train(*parse_args(argv))
    return out


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _bench(run_dir: Path, tmp: Path) -> Path:
    """A bench/models.py-shaped document (copied into the release as bench*.json)."""
    doc = {
        "image_size": 32,
        "threads": 1,
        "machine": {"cpu": "Test CPU", "logical_cores": 2},
        "models": {"factorized": {"params": 1, "mflops": 1.5, "latency_ms_b1": 0.4}},
    }
    path = tmp / "speed.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def release(run_dir, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    before = _snapshot(run_dir)
    out = root / "checkpoints" / "tiny-factorized"
    argv = [
        "release", str(run_dir), "--output", str(out), "--data", str(data),
        "--tta", "flip", "--license", LICENSE, "--no-speed", "--batch-size", "16",
        "--bench", str(_bench(run_dir, root)),
    ]  # fmt: skip
    assert main(argv) == 0
    assert _snapshot(run_dir) == before  # the run is never modified
    return out


def _dtypes(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return {f.get_slice(name).get_dtype() for name in f.keys()}


def test_release_folder_holds_the_issue_files(release, run_dir):
    names = {p.name for p in release.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_fer.py",
        "configuration_fer.py",
        "metrics.json",
        "confusion_matrix.png",
        "train_summary.json",
        "prepare_report.json",
        "bench_speed.json",
        "README.md",
        "onnx",
    } <= names
    assert not {"training_args.json", "trainer_state.json"} & names
    assert not list(release.glob("checkpoint-*")) and not list(release.glob("*.bin"))
    assert not list(release.parent.glob(".fer-hf-release-*"))  # the staging folder is gone
    # fp16 on disk, but the config tells transformers to run in float32.
    assert _dtypes(release / "model.safetensors") <= {"F16", "I64"}
    assert "F16" in _dtypes(release / "model.safetensors")
    assert json.loads((release / "config.json").read_text())["dtype"] == "float32"
    assert (release / "train_summary.json").read_bytes() == (
        run_dir / "train_summary.json"
    ).read_bytes()

    metrics = json.loads((release / "metrics.json").read_text())
    assert (metrics["split"], metrics["tta"], metrics["n"]) == ("validation", "flip", 28)
    assert metrics["model"] == str(release.resolve())
    with Image.open(release / "confusion_matrix.png") as image:
        assert image.format == "PNG"

    onnx = release / "onnx"
    assert {"model.onnx", "model_quantized.onnx", "parity.json", "config.json"} <= {
        p.name for p in onnx.iterdir()
    }
    assert not (onnx / "ort_config.json").exists()
    parity = json.loads((onnx / "parity.json").read_text())
    assert parity["passed"] and parity["int8"]["mode"] == "static"
    assert parity["model_dir"] == str(release)
    assert parity["sample"]["num_images"] == 28  # the whole validation split, not 512 of it

    card = ModelCard.load(release / "README.md")
    assert card.data.license == LICENSE and "onnx" in card.data.tags
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["Accuracy"] == metrics["accuracy"]
    assert values["Macro F1"] == metrics["macro_f1"]
    assert card.data.eval_results[0].dataset_split == "validation"
    assert "tiny-factorized" in card.text and "[More Information Needed]" not in card.text


def test_release_loads_as_float32_and_matches_the_run(release, run_dir, data):
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    from fer_hf.training.evaluation import load_eval_split, predict

    run = AutoModelForImageClassification.from_pretrained(run_dir).eval()
    model = AutoModelForImageClassification.from_pretrained(release).eval()
    assert model.dtype == torch.float32
    assert AutoModelForImageClassification.from_pretrained(release, dtype="auto").dtype == (
        torch.float32
    )
    classifier = pipeline("image-classification", model=str(release), trust_remote_code=True)
    assert classifier.model.dtype == torch.float32
    # The same in a process that never imports fer_hf (the code comes from auto_map).
    script = (
        "import sys; from transformers import AutoModelForImageClassification as A; "
        f"m = A.from_pretrained({str(release)!r}, trust_remote_code=True); "
        "assert 'fer_hf' not in sys.modules; print(m.dtype)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=release, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "torch.float32"

    processor = AutoImageProcessor.from_pretrained(release, use_fast=False)
    dataset, _ = load_eval_split(data, "validation", list(model.config.id2label.values()))
    pixel_values = processor(list(dataset["image"]), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected, got = (
            run(pixel_values=pixel_values).logits,
            model(pixel_values=pixel_values).logits,
        )
    torch.testing.assert_close(got, expected, atol=FP16_LOGIT_ATOL, rtol=0)
    assert not torch.equal(got, expected)  # the weights really were rounded to fp16

    # metrics.json describes the release weights themselves (flip TTA, as recorded).
    probabilities, _, labels, _, _ = predict(model, processor, dataset, tta="flip", device="cpu")
    metrics = json.loads((release / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(np.mean(probabilities.argmax(-1) == labels))


def test_publish_dry_run_on_the_release(release, tmp_path, capsys):
    out = tmp_path / "repo"
    argv = ["publish", str(release), "--repo-id", "fer-hf/x", "--dry-run", str(out)]
    assert main([*argv, "--license", LICENSE]) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "confusion_matrix.png",
        "modeling_fer.py",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "onnx/parity.json",
    } <= files
    assert _dtypes(out / "model.safetensors") <= {"F16", "I64"}
    assert "model_dir" not in json.loads((out / "onnx" / "parity.json").read_text())
    card = ModelCard.load(out / "README.md")
    metrics = json.loads((release / "metrics.json").read_text())
    assert card.data.model_name == "x"
    assert {r.metric_name: r.metric_value for r in card.data.eval_results}["Accuracy"] == (
        metrics["accuracy"]
    )


def test_overwrite_only_when_asked_and_onnx_by_size(run_dir, data, tmp_path, monkeypatch):
    out = tmp_path / "rel"
    out.mkdir()
    (out / "old.txt").write_text("an earlier release")
    with pytest.raises(ValueError, match="already exists and is not empty; pass --overwrite"):
        build_release(run_dir, out, data, license=LICENSE)
    assert [p.name for p in out.iterdir()] == ["old.txt"]

    # Above the size budget, onnx/ is left out unless asked for.
    monkeypatch.setattr(release_module, "ONNX_AUTO_MAX_BYTES", 1000)
    report = build_release(
        run_dir, out, data, split="test", license=LICENSE, overwrite=True, repo_id="me/tiny"
    )
    assert report["onnx"] is None and "pass --onnx" in report["onnx_skipped"]
    assert report["passed"] and report["weights"]["fp16_check"]["top1_agreement"] >= 0.99
    assert not (out / "old.txt").exists() and not (out / "onnx").exists()
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    assert ModelCard.load(out / "README.md").data.model_name == "tiny"
    assert report["size_bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def test_a_crop_trained_run_is_released_with_its_centre_crop(run_dir, data, tmp_path):
    """A run trained on 24 px random crops whose processor predates `crop_size` (as runs of
    older fer-hf versions): the release serves its training scale, and exports at it."""
    old_run = tmp_path / "old-run"
    shutil.copytree(run_dir, old_run)
    config = json.loads((old_run / "config.json").read_text())
    (old_run / "config.json").write_text(json.dumps({**config, "train_crop_size": 24}))
    out = tmp_path / "rel"
    report = build_release(old_run, out, data, license=LICENSE, measure_speed=False)
    assert report["passed"]
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 24, "width": 24}
    assert json.loads((out / "onnx" / "preprocessor_config.json").read_text())["crop_size"]
    assert json.loads((out / "config.json").read_text())["train_crop_size"] == 24


def test_failed_build_leaves_the_output_as_it_was(run_dir, data, tmp_path):
    out = tmp_path / "rel"
    out.mkdir()
    (out / "old.txt").write_text("an earlier release")
    with pytest.raises(ValueError, match="has no split 'nosuch'"):
        build_release(run_dir, out, data, split="nosuch", license=LICENSE, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["rel"]  # no staging folder left behind


@pytest.mark.parametrize(
    "case, message",
    [
        ("no-summary", "has no train_summary.json"),
        ("inside-run", "overlaps the run folder"),
        ("licence", "pass --license ID"),
        ("repo-id", "must look like 'owner/name'"),
        ("no-data", "--data .* does not exist"),
    ],
)
def test_refusals_before_any_work(run_dir, data, tmp_path, capsys, case, message):
    run, out, extra = run_dir, tmp_path / "rel", ["--license", LICENSE]
    if case == "no-summary":
        run = tmp_path / "partial"
        run.mkdir()
        for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
            (run / name).write_bytes((run_dir / name).read_bytes())
    elif case == "inside-run":
        out = run_dir / "release"
    elif case == "licence":
        extra = []
    elif case == "repo-id":
        extra += ["--repo-id", "no-owner"]
    elif case == "no-data":
        data = tmp_path / "missing"
    before = _snapshot(run_dir)
    argv = ["release", str(run), "--output", str(out), "--data", str(data), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fer-hf release: error:") and len(err.strip().splitlines()) == 1
    assert re.search(message, err)
    assert not out.exists() and _snapshot(run_dir) == before


def test_release_parity_sample_size():
    from fer_hf.release import release_parity_images

    # a 48 px gray face: 4,096 (all of FER2013's validation split); a ViT-B input: 1 GiB's worth
    assert release_parity_images({"image_size": 48, "num_channels": 1}) == 4096
    assert release_parity_images({"image_size": 224, "num_channels": 3}) == (1 << 30) // 602_112
    assert release_parity_images({"image_size": 2048, "num_channels": 3}) == 512
