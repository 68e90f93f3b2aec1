"""Tiny training runs on generated data: end to end, imbalance options, distillation, errors before
training, kill-and-resume, and a real 2-process CPU DDP run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers_training import (
    TRAIN_COUNTS,
    prepared_dataset,
    save_tiny_model,
    tiny_model_overrides,
    write_class_tree,
)
from safetensors.torch import load_file

from fer_hf.artifacts import SUMMARY_RUN_KEYS
from fer_hf.training.arguments import parse_args
from fer_hf.training.run import train

REPO = Path(__file__).resolve().parents[1]
# Tiny runs: one thread is faster than two fighting over a shared core.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
TINY_BACKBONE = (
    '{"hidden_sizes": [8, 16], "depths": [1, 1], "strides": [1, 2], "expand_ratios": [1, 2], '
    '"stem_channels": 8, "head_channels": 16}'
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared_dataset(tmp_path_factory.mktemp("data"))


def flags(data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--dataset",
        str(data),
        "--output_dir",
        str(output),
        "--image_size",
        "32",
        "--model_overrides",
        TINY_BACKBONE,
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--per_device_train_batch_size",
        "16",
        "--per_device_eval_batch_size",
        "32",
        "--learning_rate",
        "0.01",
        "--lr_scheduler_type",
        "constant",
        "--logging_steps",
        "1",
        "--save_total_limit",
        "1",
        *extra,
    ]


def run(argv: list[str], **kwargs) -> dict:
    return train(*parse_args(argv), **kwargs)


def test_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    argv = flags(
        data,
        out,
        "--max_steps",
        "120",
        "--eval_strategy",
        "steps",
        "--save_strategy",
        "steps",
        "--eval_steps",
        "40",
        "--save_steps",
        "40",
        "--report_to",
        "tensorboard",
    )
    summary = run(argv)

    state = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10  # loss goes down
    evals = [e for e in state["log_history"] if "eval_balanced_accuracy" in e]
    assert len(evals) == 3
    best = max(e["eval_balanced_accuracy"] for e in evals)
    assert summary["best_metric"] == pytest.approx(best)
    assert best > 2 / 7  # clearly above chance (1/7) on the generated classes

    # The best checkpoint is what output_dir holds, and it reloads with its processor.
    best_dir = Path(summary["best_model_checkpoint"])
    torch.testing.assert_close(
        load_file(out / "model.safetensors"), load_file(best_dir / "model.safetensors")
    )
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    assert model.config.id2label[6] == "anger" and processor.size["height"] == 32
    assert summary["eval_metrics"]["balanced_accuracy"] == pytest.approx(best)

    # Every metric key, for the eval split and the test split.
    for split in ("eval_metrics", "test_metrics"):
        metrics = summary[split]
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "loss"):
            assert key in metrics
        assert {f"recall_{name}" for name in model.config.label2id} <= set(metrics)
    on_disk = json.loads((out / "train_summary.json").read_text())
    for key in (
        "model_kind",
        "dataset",
        "hyperparameters",
        "train_runtime_s",
        "machine",
        "base_model",
        "best_metric",
        "eval_metrics",
    ):
        assert key in on_disk
    dataset = on_disk["dataset"]
    assert dataset["class_counts_before"]["happy"] == 10 and dataset["resample"] == "oversample"
    assert set(dataset["class_counts_after"].values()) == {14}
    assert on_disk["machine"]["num_processes"] == 1
    assert list(out.glob("runs/*/events.out.tfevents.*"))  # TensorBoard
    assert not list(out.rglob("training_args.bin"))  # no pickles
    assert (out / "training_args.json").is_file()


@pytest.mark.parametrize(
    "extra",
    [
        ["--imbalance", "sampler"],
        ["--imbalance", "weighted_loss", "--class_weight_method", "effective"],
        ["--imbalance", "focal", "--label_smoothing_factor", "0.1"],
        ["--resample", "none"],
    ],
    ids=["sampler", "weighted", "focal", "no-resample"],
)
def test_imbalance_options_train(tmp_path, extra):
    data = prepared_dataset(tmp_path / "data", resample="none")
    summary = run(flags(data, tmp_path / "run", "--max_steps", "6", *extra))
    assert summary["global_step"] == 6 and summary["train_loss"] > 0
    assert summary["hyperparameters"]["loss"]["imbalance"] == (
        extra[1] if extra[0] == "--imbalance" else "none"
    )


def test_crop_trained_model_records_its_crop_size(data, tmp_path):
    out = tmp_path / "run"
    run(flags(data, out, "--max_steps", "2", "--crop_size", "24"))
    assert json.loads((out / "config.json").read_text())["train_crop_size"] == 24
    # ... and is served (and was evaluated) on one centre crop of that size
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 24, "width": 24}
    # training it further on whole faces drops both
    again = tmp_path / "again"
    further = flags(data, again, "--max_steps", "1", "--model_name_or_path", str(out))
    for flag in ("--image_size", "--model_overrides"):  # fixed by the model folder
        del further[further.index(flag) : further.index(flag) + 2]
    run(further)
    assert json.loads((again / "config.json").read_text())["train_crop_size"] is None
    assert json.loads((again / "preprocessor_config.json").read_text())["crop_size"] is None


def test_load_time_resampling_refuses_to_compound(data, tmp_path):
    with pytest.raises(ValueError, match="prepared with resample='oversample'"):
        run(flags(data, tmp_path / "run", "--resample", "sqrt"))


def test_distillation_from_a_teacher_with_other_preprocessing(data, tmp_path):
    # a 3-channel 40 px teacher for a 1-channel 32 px student
    teacher_dir = save_tiny_model(tmp_path / "teacher", "baseline", image_size=40)
    summary = run(
        flags(
            data,
            tmp_path / "run",
            "--max_steps",
            "4",
            "--teacher_model",
            str(teacher_dir),
            "--distillation_alpha",
            "0.7",
            "--teacher_tta",
            "flip",
        )
    )
    assert summary["hyperparameters"]["loss"]["distillation_alpha"] == 0.7
    assert summary["hyperparameters"]["loss"]["teacher_tta"] == "flip"
    assert summary["global_step"] == 4


def test_flip_teacher_averages_the_logits_of_the_crop_and_its_mirror():
    from types import SimpleNamespace

    from fer_hf.models import build_model
    from fer_hf.training.trainer import FerTrainer

    teacher, _ = build_model("factorized", image_size=32, **tiny_model_overrides("factorized"))
    teacher.eval()
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = teacher(pixel_values=x).logits
        mirrored = teacher(pixel_values=x.flip(-1)).logits
        trainer = SimpleNamespace(args=SimpleNamespace(teacher_tta="flip"))
        flipped = FerTrainer._teacher_logits(trainer, teacher, x)
        trainer.args.teacher_tta = "none"
        unflipped = FerTrainer._teacher_logits(trainer, teacher, x)
    assert not torch.allclose(plain, mirrored, atol=1e-4)  # the test can tell them apart
    torch.testing.assert_close(flipped, (plain + mirrored) / 2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(unflipped, plain)


def test_ensemble_teacher_of_two_folders(data, tmp_path):
    """Two teachers named with a comma: both load, each with its own preprocessing (a 3-channel
    40 px ResNet and a 1-channel 32 px factorized net), and the run records the pair."""
    spec = ",".join(
        str(save_tiny_model(tmp_path / f"teacher_{kind}", kind, image_size=size))
        for kind, size in (("baseline", 40), ("factorized", 32))
    )
    summary = run(flags(data, tmp_path / "run", "--max_steps", "3", "--teacher_model", spec))
    assert summary["hyperparameters"]["loss"]["teacher_model"] == spec
    assert summary["global_step"] == 3


def test_ensemble_teacher_target_is_the_mean_of_the_softened_probabilities():
    from types import SimpleNamespace

    from fer_hf.models import build_model
    from fer_hf.training.trainer import FerTrainer

    torch.manual_seed(0)
    members = [
        build_model("factorized", image_size=32, **tiny_model_overrides("factorized"))[0]
        for _ in range(2)
    ]
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    trainer = SimpleNamespace(
        args=SimpleNamespace(teacher_tta="none", distillation_temperature=4.0, device="cpu"),
        processing_class=None,
    )
    trainer._teacher_logits = lambda teacher, pixels: FerTrainer._teacher_logits(
        trainer, teacher, pixels
    )
    trainer._teacher_inputs = lambda processor, pixels: pixels
    trainer.teachers = FerTrainer._teacher_members(trainer, members, None, False)
    with torch.no_grad():
        target = FerTrainer._ensemble_logits(trainer, x)
        expected = torch.stack(
            [torch.softmax(m(pixel_values=x).logits / 4.0, -1) for m in members]
        ).mean(0)
    torch.testing.assert_close(torch.softmax(target / 4.0, -1), expected, atol=1e-6, rtol=1e-5)
    trainer.teachers = trainer.teachers[:1]  # one teacher: its own logits, untouched
    with torch.no_grad():
        torch.testing.assert_close(
            FerTrainer._ensemble_logits(trainer, x), members[0](pixel_values=x).logits
        )


def test_teacher_inputs_follow_the_size_each_teacher_takes():
    """Same normalisation, other sizes: a crop-trained teacher of a whole-face student gets its
    own centre crop, a whole-face teacher of a crop-trained student gets the crop resized up,
    and a teacher taking the student's batch as it is gets it untouched."""
    from types import SimpleNamespace

    from fer_hf.models import FerImageProcessor
    from fer_hf.training.trainer import FerTrainer

    whole = FerImageProcessor(size=48, num_channels=1)
    cropped = FerImageProcessor(size=48, num_channels=1, crop_size=40)
    faces = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    crops = faces[..., 4:44, 4:44]
    to = lambda student, teacher, x: FerTrainer._teacher_inputs(  # noqa: E731
        SimpleNamespace(processing_class=student), teacher, x
    )
    torch.testing.assert_close(to(whole, cropped, faces), crops)
    assert to(cropped, whole, crops).shape[-2:] == (48, 48)
    assert to(cropped, cropped, crops) is crops
    assert to(whole, whole, faces) is faces


def test_teacher_list_with_an_empty_entry_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="has an empty entry"):
        run(flags(data, tmp_path / "run", "--teacher_model", "a,,b"))


def test_flip_teacher_needs_a_teacher(data, tmp_path):
    with pytest.raises(ValueError, match="needs a teacher: set `teacher_model`"):
        run(flags(data, tmp_path / "run", "--teacher_tta", "flip"))


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (
            ["--eval_split", "dev"],
            ValueError,
            r"has no split 'dev' \(the eval split\); it has \['test', 'train', 'validation'\]",
        ),
        (["--num_classes", "8"], ValueError, "--num_classes 8 differs from the data's 7 classes"),
        (["--valence_arousal"], ValueError, "--valence_arousal needs valence/arousal targets"),
        (["--resume_from_checkpoint", "last"], ValueError, "no checkpoint-\\* folder"),
    ],
)
def test_errors_before_training(data, tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        run(flags(data, tmp_path / "run", *extra))
    assert not (tmp_path / "run").exists()  # nothing was written


def test_model_config_loss_settings_are_refused(data, tmp_path):
    """The training loss has one owner, the Trainer's arguments; FerConfig's own loss fields
    (the model's standalone loss) are refused in training instead of silently ignored."""
    argv = flags(data, tmp_path / "run")
    overrides = {**json.loads(TINY_BACKBONE), "label_smoothing": 0.1}
    argv[argv.index(TINY_BACKBONE)] = json.dumps(overrides)
    with pytest.raises(ValueError, match="use --label_smoothing_factor and --imbalance"):
        run(argv)


def test_other_schema_and_missing_data(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1]})}).save_to_disk(
        str(tmp_path / "plain")
    )
    with pytest.raises(ValueError, match="is not a `fer-hf prepare` folder"):
        run(flags(tmp_path / "plain", tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(flags(tmp_path / "missing", tmp_path / "run"))


def test_teacher_with_other_labels_is_refused(data, tmp_path):
    from fer_hf.models import init_model_folder

    teacher = init_model_folder("factorized", tmp_path / "teacher8", image_size=32, num_classes=8)
    with pytest.raises(ValueError, match=r"teacher model .* predicts .*'contempt'\]"):
        run(flags(data, tmp_path / "run", "--teacher_model", str(teacher)))


KILLED_RUN = """
import os, signal, sys
from transformers import TrainerCallback
from fer_hf.training.arguments import parse_args
from fer_hf.training.run import train

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # as a preempted job dies: no clean-up

train(*parse_args(sys.argv[1:]), callbacks=[KillAt()])
"""


def test_kill_and_resume_reproduces_the_uninterrupted_run(data, tmp_path):
    # No augmentation and a seeded sampler, so both runs see the same batches; checkpoints every
    # 2 steps; the kill comes mid-epoch (98 records / 8 = 13 steps per epoch) after step 5.
    common = [
        "--max_steps",
        "7",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--eval_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--per_device_train_batch_size",
        "8",
        "--augment",
        "false",
        "--save_total_limit",
        "2",
    ]
    reference = run(flags(data, tmp_path / "reference", *common))

    killed = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN.format(kill_at=5)))
    process = subprocess.run(
        [sys.executable, str(script), *flags(data, killed, *common)],
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert process.returncode == -9, process.stderr[-3000:]
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # The summary written at the start records the data and recipe of the stopped run, so its
    # checkpoints average (stochastic weight averaging) into a folder that can be released.
    started = json.loads((killed / "train_summary.json").read_text())
    assert started["in_progress"] is True and "global_step" not in started
    assert started["dataset"]["path"] and started["hyperparameters"]["max_steps"] == 7
    from fer_hf.training.averaging import average_models

    record = average_models(
        [killed / "checkpoint-2", killed / "checkpoint-4"], tmp_path / "avg", data=data,
        bn_images=16, batch_size=8,
    )  # fmt: skip
    averaged = json.loads((tmp_path / "avg" / "train_summary.json").read_text())
    assert record["summary_from"] == str((killed / "train_summary.json").resolve())
    assert averaged["dataset"] == started["dataset"] and averaged["model_kind"] == "factorized"
    assert not set(SUMMARY_RUN_KEYS) & set(averaged)

    resumed = run(flags(data, killed, *common))  # finds checkpoint-4 by itself
    assert resumed["resumed_from"] == str(killed / "checkpoint-4")
    assert resumed["global_step"] == 7
    finished = json.loads((killed / "train_summary.json").read_text())
    assert "in_progress" not in finished and finished["global_step"] == 7
    # What a run's final summary adds to or changes in its start summary is all listed among the
    # per-run keys `fer-hf average` drops, and the list names no key a run does not write.
    changed = {k for k in set(started) | set(finished) if started.get(k) != finished.get(k)}
    assert changed <= set(SUMMARY_RUN_KEYS)
    assert set(SUMMARY_RUN_KEYS) - {"in_progress"} <= set(finished)

    def losses(folder):
        history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
        return {e["step"]: (e["loss"], e["learning_rate"]) for e in history if "loss" in e}

    expected, got = losses(tmp_path / "reference"), losses(killed)
    assert sorted(got) == list(range(1, 8))
    for step in range(1, 8):
        assert got[step] == pytest.approx(expected[step], rel=1e-4)
    torch.testing.assert_close(
        load_file(killed / "model.safetensors"),
        load_file(tmp_path / "reference" / "model.safetensors"),
    )
    del reference


def launch_two_cpu_processes(train_flags: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2 train.py FLAGS` on CPU (gloo); asserts
    that it succeeded."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "train.py"),
        *train_flags,
    ]
    process = subprocess.run(
        command, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=400, cwd=REPO
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    return process


def test_two_process_cpu_ddp(data, tmp_path):
    out = tmp_path / "ddp"
    process = launch_two_cpu_processes(
        flags(data, out, "--num_train_epochs", "1", "--per_device_train_batch_size", "7")
    )
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["machine"]["num_processes"] == 2
    assert summary["machine"]["distributed_type"] == "MULTI_CPU"
    assert summary["hyperparameters"]["total_train_batch_size"] == 14
    # 98 records shared by 2 ranks x 7 per step: 7 steps (one process would need 14).
    assert summary["global_step"] == 7
    assert "fer-hf train: factorized" in process.stdout


@pytest.mark.parametrize("classes", [7, 8], ids=["same-head", "new-head"])
def test_start_from_a_local_fer_folder(data, tmp_path, classes):
    from fer_hf.models import build_model

    start, processor = build_model(
        "factorized", image_size=32, num_classes=classes, **tiny_model_overrides()
    )
    start.save_pretrained(tmp_path / "start")
    processor.save_pretrained(tmp_path / "start")
    argv = flags(
        data, tmp_path / "run", "--max_steps", "2", "--model_name_or_path", str(tmp_path / "start")
    )
    argv.remove("--model_overrides"), argv.remove(TINY_BACKBONE)
    if classes == 7:
        argv.remove("--image_size"), argv.remove("32")  # a complete model keeps its own size
    summary = run(argv)
    assert summary["base_model"] == str(tmp_path / "start") and summary["global_step"] == 2
    trained = load_file(tmp_path / "run" / "model.safetensors")
    initial = start.state_dict()
    # The backbone's first convolution starts from the folder's weights in both cases.
    key = next(k for k in trained if k.startswith("backbone.") and k.endswith("weight"))
    assert trained[key].shape == initial[key].shape
    assert not torch.equal(trained[key], initial[key])  # and was trained


def test_complete_fer_folder_of_another_kind_is_refused(data, tmp_path):
    from fer_hf.models import init_model_folder

    folder = init_model_folder("factorized", tmp_path / "start", image_size=32)
    argv = flags(data, tmp_path / "run", "--model_name_or_path", str(folder), "--model_kind", "vit")
    argv.remove("--model_overrides"), argv.remove(TINY_BACKBONE)
    argv.remove("--image_size"), argv.remove("32")
    with pytest.raises(
        ValueError, match="holds a 'fer_factorized' backbone but --model_kind is 'vit'"
    ):
        run(argv)


def test_raw_source_prepared_on_the_fly_with_workers(tmp_path):

    tree = write_class_tree(tmp_path / "raw", {"train": TRAIN_COUNTS, "val": (2,) * 7})
    argv = flags(
        tree,
        tmp_path / "run",
        "--source",
        "folder",
        "--max_steps",
        "3",
        "--dataloader_num_workers",
        "1",
    )
    summary = run(argv)
    dataset = summary["dataset"]
    assert dataset["name"] == "folder" and dataset["resample"] == "oversample"
    assert set(dataset["class_counts_after"].values()) == {14}  # oversampled by default
    assert summary["global_step"] == 3 and summary["test_metrics"] is None
