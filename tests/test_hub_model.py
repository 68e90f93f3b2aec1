"""Model cards rendered from run files, the assembled repository, and the upload seam (offline)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from fer_hf.cli import main
from fer_hf.hub import (
    PublishError,
    assemble_model_repo,
    load_release,
    publish_model,
    render_model_card,
    upload_folder,
)
from fer_hf.metrics import expression_report, valence_arousal_report

REPO_ID = "fer-hf/tiny-factorized"


def _write_release(folder, labels, base_model=None):
    rng = np.random.default_rng(0)
    references, predictions = rng.integers(0, 6, 60), rng.integers(0, 7, 60)  # anger never true
    metrics = {
        "split": "test",
        **expression_report(predictions, references, labels),
        **valence_arousal_report(rng.uniform(-1, 1, (60, 2)), *rng.uniform(-1, 1, (2, 60))),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    Image.new("RGB", (32, 32), "white").save(folder / "confusion_matrix.png")
    summary = {
        "model_kind": "factorized",
        "base_model": base_model,
        "dataset": {
            "name": "affectnet",
            "num_classes": 7,
            "class_counts_before": {label: 10 * (i + 1) for i, label in enumerate(labels)},
            "class_counts_after": {label: 70 for label in labels},
            "resample": "oversample",
        },
        "hyperparameters": {"learning_rate": 0.002, "num_train_epochs": 3, "warmup_steps": None},
        "train_runtime_s": 75.2,
        "machine": {"cpu": "Test CPU", "cpu_count": 2, "gpus": [], "num_processes": 1},
        "metric_for_best_model": "balanced_accuracy",
        "best_metric": 0.25,
    }
    (folder / "train_summary.json").write_text(json.dumps(summary))
    report = {"num_skipped": 3, "num_excluded": 2, "split_origin": {"validation": "carved"}}
    (folder / "prepare_report.json").write_text(json.dumps(report))
    # Training leftovers that must never be published.
    (folder / "training_args.bin").write_bytes(b"\x80\x04pickle")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out").write_text("tensorboard")
    return metrics


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny factorized model with valence/arousal, its run files and its ONNX export."""
    from fer_hf.export import export_model
    from fer_hf.models import build_model, tiny_config

    root = tmp_path_factory.mktemp("release")
    model_dir = root / "model"
    model, processor = build_model(
        "factorized", image_size=32, valence_arousal=True, backbone_config=tiny_config("factorized")
    )
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    metrics = _write_release(model_dir, labels)
    onnx_dir = root / "onnx"
    export_model(model_dir, onnx_dir, quantize_mode="dynamic", measure_speed=False)
    return {"model_dir": model_dir, "onnx_dir": onnx_dir, "metrics": metrics, "labels": labels}


@pytest.fixture(scope="module")
def repo(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("dry-run") / "repo"
    assemble_model_repo(release["model_dir"], out, repo_id=REPO_ID, onnx_dir=release["onnx_dir"])
    return out


def test_card_metadata_parses_and_equals_metrics(repo, release):
    data = ModelCard.load(repo / "README.md").data
    metrics = release["metrics"]
    values = {r.metric_name: r.metric_value for r in data.eval_results}
    assert values == {
        "Accuracy": metrics["accuracy"],
        "Balanced accuracy": metrics["balanced_accuracy"],
        "Macro F1": metrics["macro_f1"],
        "Valence CCC": metrics["valence_ccc"],
        "Valence RMSE": metrics["valence_rmse"],
        "Arousal CCC": metrics["arousal_ccc"],
        "Arousal RMSE": metrics["arousal_rmse"],
    }
    result = data.eval_results[0]
    assert (result.task_type, result.dataset_type, result.dataset_split) == (
        "image-classification",
        "affectnet",
        "test",
    )
    assert data.model_name == "tiny-factorized"
    assert data.pipeline_tag == "image-classification"
    assert data.library_name == "transformers"
    assert data.license == "other" and data.license_name == "affectnet-research-only"
    assert data.datasets == ["affectnet"]
    assert {"fer-hf", "valence-arousal", "onnx", "factorized"} <= set(data.tags)
    assert data.get("base_model") is None  # trained from scratch


def test_card_body_is_rendered_from_the_run(repo, release):
    text = (repo / "README.md").read_text()
    assert "[More Information Needed]" not in text
    assert "{{" not in text and "{%" not in text
    assert "| None |" not in text and "nan" not in text.lower().split()
    for label, recall in release["metrics"]["per_class_recall"].items():
        shown = "n/a (no examples of this class)" if recall is None else f"{100 * recall:.2f}%"
        assert f"| {label} | {shown} |" in text
    assert "| anger | 70 | 70 |" in text  # class counts before/after resampling
    assert "skipped 3 unreadable or invalid records and excluded 2" in text
    assert "| `learning_rate` | `0.002` |" in text and "warmup_steps" not in text
    assert "1 min 15 s on Test CPU (2 cores)" in text
    assert "![Confusion matrix" in text and "(confusion_matrix.png)" in text
    for needle in (
        'pipeline("image-classification"',
        "AutoModelForImageClassification.from_pretrained",
        'subfolder="onnx"',
        f"fer-hf predict photo.jpg --model {REPO_ID}",
        "Cross-dataset caveat",
        "Article 5(1)(f)",
        "workplace and education institutions",
        "lie or deception detection",
        "not** measure what a person feels",
        "research-only",
        "@article{mollahosseini2019affectnet",
        "fp32 max abs `logits` difference vs PyTorch",
        "Latency was not measured",  # no bench JSON and no ONNX timing in this release
    ):
        assert needle in text, needle


def test_sections_without_source_files_are_left_out(release, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(release["model_dir"]):
        if name.endswith((".json", ".py", ".safetensors")) and name not in (
            "metrics.json",
            "train_summary.json",
        ):
            shutil.copy(release["model_dir"] / name, bare / name)
    with pytest.raises(ValueError, match="training data is unknown .no train_summary.json."):
        render_model_card(load_release(bare), REPO_ID)
    card = render_model_card(load_release(bare), REPO_ID, license="apache-2.0")
    assert card.data.get("eval_results") is None and card.data.license == "apache-2.0"
    for section in ("## Evaluation results", "## Training data", "## Training procedure", "onnx"):
        assert section not in card.text
    assert "[More Information Needed]" not in str(card)


def test_base_model_only_when_a_hub_id(release, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(release["model_dir"], folder)
    summary = json.loads((folder / "train_summary.json").read_text())
    hub_id, local = "microsoft/resnet-18", tmp_path / "resnet-local"
    local.mkdir()
    for base, expected, shown in (
        (hub_id, hub_id, f"initialised from [`{hub_id}`](https://huggingface.co/{hub_id})"),
        (str(local), None, "initialised from a local checkpoint (`resnet-local`)"),
    ):
        (folder / "train_summary.json").write_text(json.dumps({**summary, "base_model": base}))
        card = render_model_card(load_release(folder), REPO_ID)
        assert card.data.get("base_model") == expected
        assert shown in card.text and str(tmp_path) not in card.text


def test_cross_dataset_evaluation_is_named_as_such(release, tmp_path):
    folder, train_data, other = tmp_path / "m", tmp_path / "fer2013", tmp_path / "other"
    shutil.copytree(release["model_dir"], folder)
    summary = json.loads((folder / "train_summary.json").read_text())
    summary["dataset"].update(name="fer2013", path=str(train_data))
    (folder / "train_summary.json").write_text(json.dumps(summary))
    metrics = json.loads((folder / "metrics.json").read_text())
    other.mkdir()
    (other / "fer_hf_dataset.json").write_text(json.dumps({"source": "affectnet"}))
    for data, dataset_type, caveat in (
        (train_data, "fer2013", "drawn from the same source as the training data"),
        (other, "affectnet", "not from FER2013, the training data: they are a cross-dataset"),
    ):
        (folder / "metrics.json").write_text(json.dumps({**metrics, "data": str(data)}))
        card = render_model_card(load_release(folder), REPO_ID)
        assert {r.dataset_type for r in card.data.eval_results} == {dataset_type}
        assert caveat in card.text


def test_input_line_names_the_centre_crop(release, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(release["model_dir"], folder)
    assert "then its centre" not in render_model_card(load_release(folder), REPO_ID).text
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    processor["crop_size"] = {"height": 28, "width": 28}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    text = render_model_card(load_release(folder), REPO_ID).text
    assert "then its centre 28x28 px (the model was trained on random crops" in text


def test_speed_section_takes_the_matching_bench_entries(release, tmp_path, caplog):
    n_params = load_release(release["model_dir"]).num_parameters
    entry = {"params": n_params, "mflops": 1.25, "latency_ms_b1": 0.5, "throughput_b64": 9000.0}
    folder = tmp_path / "release"
    shutil.copytree(release["model_dir"], folder)
    models_json, inference_json = tmp_path / "models.json", folder / "bench_inference.json"
    models_json.write_text(
        json.dumps(
            {
                "image_size": 32,
                "threads": 2,
                "models": {"factorized": entry, "baseline": {**entry, "params": 10 * n_params}},
            }
        )
    )
    row = {
        "kind": "factorized",
        "params": n_params,
        "backend": "onnx-int8-static",
        "threads": 1,
        "latency_ms_median": 0.12,
        "latency_ms_p90": 0.2,
        "throughput_batch64": 20000.0,
    }
    inference_json.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu": "Bench CPU",
                    "logical_cores": 2,
                    "isa": ["avx2"],
                    "date": "2025-01-01",
                },
                "models": [row, {**row, "kind": "baseline", "params": 10 * n_params}],
                "end_to_end": [
                    {
                        "kind": "factorized",
                        "backend": "onnx-fp32",
                        "threads": 2,
                        "frame": "640x480, one face",
                        "frames_per_s": 41.25,
                    }
                ],
            }
        )
    )
    text = render_model_card(load_release(folder, bench_files=[models_json]), REPO_ID).text
    assert "1.2 MFLOPs per image at 32 px" in text
    assert "| PyTorch (eager) | 0.500 ms | 9,000 | 2 | `bench/models.py` |" in text
    assert "| onnx-int8-static | 0.120 ms (p90 0.200) | 20,000 | 1 | `bench/inference.py` |" in text
    assert text.count("`bench/inference.py` |") == 1  # the baseline row is another model
    assert "41.2 frames/s with onnx-fp32, 2 thread(s)" in text
    assert "Machine: Bench CPU (2 logical cores; avx2), 2025-01-01." in text

    # `bench/inference.py --models` labels rows by folder name and adds `model_kind`; the
    # end-to-end rows follow the matched folder, not another release of the same kind.
    labelled = {**row, "kind": "fer2013-factorized", "model_kind": "factorized"}
    frame = {"backend": "torch", "threads": 1, "frame": "640x480, one face"}
    inference_json.write_text(
        json.dumps(
            {
                "machine": {"cpu": "Bench CPU", "logical_cores": 2},
                "models": [labelled, {**labelled, "kind": "other", "params": n_params + 1}],
                "end_to_end": [
                    {**frame, "kind": "fer2013-factorized", "frames_per_s": 44.9},
                    {**frame, "kind": "other", "frames_per_s": 12.5},
                ],
            }
        )
    )
    text = render_model_card(load_release(folder), REPO_ID).text
    assert text.count("`bench/inference.py` |") == 1
    assert "44.9 frames/s with torch" in text and "12.5 frames/s" not in text

    models_json.write_text(
        json.dumps(
            {
                "image_size": 32,
                "threads": 2,
                "models": {"factorized": {**entry, "params": n_params + 1}},
            }
        )
    )
    text = render_model_card(load_release(release["model_dir"], bench_files=[models_json]), REPO_ID)
    assert "MFLOPs" not in text.text and "another configuration" in caplog.text
    models_json.write_text(json.dumps({"models": [1, 2]}))
    with pytest.raises(ValueError, match="neither a bench/models.py document"):
        load_release(release["model_dir"], bench_files=[models_json])


def test_metrics_of_another_model_are_refused(release, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(release["model_dir"], folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["confusion_matrix"]["labels"] = [*metrics["confusion_matrix"]["labels"], "contempt"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="confusion_matrix labels .* differ from the model's"):
        load_release(folder)


def test_repository_holds_exactly_the_published_files(repo):
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    code = [
        "configuration_factorized.py",
        "configuration_fer.py",
        "image_processing_fer.py",
        "modeling_factorized.py",
        "modeling_fer.py",
    ]
    onnx = ["config.json", "model.onnx", "model_quantized.onnx", "parity.json"]
    onnx += ["preprocessor_config.json", *code]
    expected = ["README.md", "config.json", "confusion_matrix.png", "model.safetensors"]
    expected += ["preprocessor_config.json", *code, *(f"onnx/{name}" for name in onnx)]
    assert files == sorted(expected)
    assert "model_dir" not in json.loads((repo / "onnx" / "parity.json").read_text())


LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from optimum.onnxruntime import ORTModelForImageClassification
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    repo, pixels = sys.argv[1], torch.from_numpy(np.load(sys.argv[2]))
    model = AutoModelForImageClassification.from_pretrained(repo, trust_remote_code=True).eval()
    with torch.no_grad():
        torch_logits = model(pixel_values=pixels).logits.numpy()
    ort = {
        name: ORTModelForImageClassification.from_pretrained(
            repo, subfolder="onnx", file_name=name, trust_remote_code=True
        )(pixel_values=pixels).logits.numpy()
        for name in ("model.onnx", "model_quantized.onnx")
    }
    classifier = pipeline("image-classification", model=repo, trust_remote_code=True)
    labels = [p["label"] for p in classifier(Image.new("RGB", (40, 40), "gray"))]
    imported = sorted(m for m in sys.modules if m.split(".")[0] in ("fer_hf", "train"))
    print(json.dumps({"torch": torch_logits.tolist(), "fp32": ort["model.onnx"].tolist(),
                      "int8_shape": list(ort["model_quantized.onnx"].shape),
                      "labels": labels, "imported": imported}))
    """
)


def test_repository_loads_in_a_process_without_fer_hf(repo, release, tmp_path):
    import torch
    from transformers import AutoModelForImageClassification

    from fer_hf.models import register

    register()
    pixels = np.random.default_rng(1).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "pixels.npy", pixels)
    model = AutoModelForImageClassification.from_pretrained(release["model_dir"]).eval()
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(pixels)).logits.numpy()
    (tmp_path / "load.py").write_text(LOADER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(repo), str(tmp_path / "pixels.npy")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    np.testing.assert_allclose(result["torch"], expected, atol=1e-6)
    np.testing.assert_allclose(result["fp32"], expected, atol=1e-4)
    assert result["int8_shape"] == [2, 7]
    assert len(result["labels"]) == 5 and set(result["labels"]) <= set(release["labels"])


def test_bad_folders_are_refused(release, tmp_path):
    with pytest.raises(ValueError, match="already exists and is not empty"):
        assemble_model_repo(release["model_dir"], release["model_dir"], repo_id=REPO_ID)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(release["model_dir"] / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(FileNotFoundError, match=r"no \*.safetensors weights .*pytorch_model.bin"):
        assemble_model_repo(pickled, tmp_path / "out1", repo_id=REPO_ID)
    no_code = tmp_path / "no_code"
    shutil.copytree(release["model_dir"], no_code)
    (no_code / "modeling_factorized.py").unlink()  # imported by modeling_fer.py
    with pytest.raises(FileNotFoundError, match="needs modeling_factorized.py, which is missing"):
        assemble_model_repo(no_code, tmp_path / "out2", repo_id=REPO_ID)
    with pytest.raises(ValueError, match="must look like 'owner/name', got 'tiny'"):
        assemble_model_repo(release["model_dir"], tmp_path / "out3", repo_id="tiny")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


class RecordingHfApi:
    """Stands in for `HfApi` at the upload seam: records the calls and what the folder held."""

    endpoint = "https://hub.invalid"

    def __init__(self):
        self.calls = []

    def whoami(self):
        self.calls.append(("whoami", {}))
        return {"name": "tester"}

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        folder = kwargs["folder_path"]
        files = sorted(str(p.relative_to(folder)) for p in _walk(folder))
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{kwargs['repo_id']}/c1"})


def _walk(folder):
    from pathlib import Path

    return [p for p in Path(folder).rglob("*") if p.is_file()]


def test_upload_reached_with_the_right_arguments(release, repo):
    api = RecordingHfApi()
    url = publish_model(
        release["model_dir"], REPO_ID, onnx_dir=release["onnx_dir"], private=True, api=api
    )
    assert url == f"https://hub.invalid/{REPO_ID}/c1"
    assert [name for name, _ in api.calls] == ["whoami", "create_repo", "upload_folder"]
    assert api.calls[1][1] == {
        "repo_id": REPO_ID,
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    upload = api.calls[2][1]
    assert (upload["repo_id"], upload["repo_type"], upload["delete_patterns"]) == (
        REPO_ID,
        "model",
        "*",
    )
    assert upload["files"] == sorted(str(p.relative_to(repo)) for p in _walk(repo))


def test_cli_dry_run_writes_the_folder(release, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["publish", str(release["model_dir"]), "--repo-id", REPO_ID, "--dry-run", str(out)]
    assert main(args) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    assert (out / "README.md").is_file() and not (out / "onnx").exists()
    # A release folder that carries its export in onnx/ publishes it without --onnx.
    folder = tmp_path / "release"
    shutil.copytree(release["model_dir"], folder)
    shutil.copytree(release["onnx_dir"], folder / "onnx")
    args = ["publish", str(folder), "--repo-id", REPO_ID, "--dry-run", str(tmp_path / "out2")]
    assert main(args) == 0
    assert (tmp_path / "out2" / "onnx" / "model_quantized.onnx").is_file()


def test_offline_hub_is_one_clear_line(release, monkeypatch, capsys):
    import huggingface_hub.constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    reset_sessions()
    try:
        assert main(["publish", str(release["model_dir"]), "--repo-id", REPO_ID]) == 2
    finally:
        monkeypatch.undo()
        reset_sessions()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fer-hf publish: error: HF_HUB_OFFLINE is set")


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "no Hugging Face token found; run `hf auth login` or set HF_TOKEN"),
        (
            {"HF_TOKEN": "hf_not_a_real_token", "HF_ENDPOINT": "http://127.0.0.1:9"},
            "cannot reach the Hugging Face Hub at http://127.0.0.1:9",
        ),
    ],
)
def test_missing_token_or_unreachable_hub_is_one_clear_line(release, tmp_path, env, message):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    clean.update({"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"), **env})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_hf.cli",
            "publish",
            str(release["model_dir"]),
            "--repo-id",
            REPO_ID,
        ],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"fer-hf publish: error: {message}")


def test_upload_error_wraps_http_refusals():
    from huggingface_hub.errors import HfHubHTTPError
    from requests import Response

    class Refusing(RecordingHfApi):
        def create_repo(self, **kwargs):
            response = Response()
            response.status_code = 403
            raise HfHubHTTPError("403 Forbidden: you cannot write here", response=response)

    with pytest.raises(PublishError, match=r"HTTP 403\): the token cannot write to 'o/n'"):
        upload_folder(".", "o/n", commit_message="x", api=Refusing())


def test_templates_ship_in_the_wheel():
    """Card templates are package data, so a non-editable install renders cards too."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["fer_hf"]
    templates = sorted((root / "fer_hf" / "hub" / "templates").glob("*.md"))
    assert templates
    for path in templates:
        relative = str(path.relative_to(root / "fer_hf"))
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), (
            f"{relative} is not package data; add 'hub/templates/*.md' to "
            "[tool.setuptools.package-data] in pyproject.toml"
        )


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "clip-bounds"])
def test_count_parameters_skips_buffers(tmp_path, clip):
    from fer_hf.hub.release import count_parameters
    from fer_hf.models import build_model, tiny_config

    backbone = tiny_config("factorized")
    backbone.clip_activations = clip
    model, _ = build_model("factorized", image_size=32, backbone_config=backbone)
    model.save_pretrained(tmp_path)
    assert count_parameters([tmp_path / "model.safetensors"]) == model.num_parameters()
