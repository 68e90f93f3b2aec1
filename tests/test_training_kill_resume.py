"""Training survives being killed: `python train.py ...` is SIGKILLed from outside (as a preempted
or OOM-killed job dies: no clean-up) right after its first checkpoint, the same command is run
again, and the final metrics and weights equal those of an uninterrupted run of the same seed.

Only the public command is used (flags in, train_summary.json out), not the training internals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_training import prepared_dataset
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
TINY_BACKBONE = (
    '{"hidden_sizes": [8, 16], "depths": [1, 1], "strides": [1, 2], "expand_ratios": [1, 2], '
    '"stem_channels": 8, "head_channels": 16}'
)
MAX_STEPS, SAVE_STEPS = 60, 20
TIMINGS = ("runtime", "per_second")  # wall-clock figures differ between any two runs


def command(data: Path, output: Path) -> list[str]:
    # Augmentation stays on (the default): the resumed run must replay its random draws too.
    return [
        sys.executable, str(REPO / "train.py"),
        "--dataset", str(data), "--output_dir", str(output), "--image_size", "32",
        "--model_overrides", TINY_BACKBONE, "--use_cpu", "true", "--report_to", "none",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
        "--learning_rate", "0.01", "--seed", "7", "--max_steps", str(MAX_STEPS),
        "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS), "--save_total_limit", "2",
        "--eval_strategy", "no", "--load_best_model_at_end", "false", "--logging_steps", "1",
    ]  # fmt: skip


def run_to_end(argv: list[str]) -> dict:
    done = subprocess.run(argv, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(
        (Path(argv[argv.index("--output_dir") + 1]) / "train_summary.json").read_text()
    )


def losses(output: Path) -> dict[int, float]:
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared_dataset(tmp_path_factory.mktemp("kill-data"))


def test_sigkill_after_the_first_checkpoint_then_rerun_equals_an_uninterrupted_run(data, tmp_path):
    reference = run_to_end(command(data, tmp_path / "reference"))

    killed = tmp_path / "killed"
    argv = command(data, killed)
    first = killed / f"checkpoint-{SAVE_STEPS}"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(argv, env=ENV, cwd=REPO, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600
        # trainer_state.json is the last file a checkpoint gets: the checkpoint is complete.
        while not (first / "trainer_state.json").is_file():
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    started = json.loads((killed / "train_summary.json").read_text())
    assert started.get("in_progress") is True  # it really died mid-run: only the start summary
    # Normally only checkpoint-20 exists; on a very busy machine the kill may land later.
    last = max(killed.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert int(last.name.split("-")[1]) < MAX_STEPS

    resumed = run_to_end(argv)  # the same command again
    assert resumed["resumed_from"] == str(last)  # it resumed, and did not start over
    assert resumed["global_step"] == reference["global_step"] == MAX_STEPS
    for split in ("eval_metrics", "test_metrics"):
        metrics = {k: v for k, v in reference[split].items() if not k.endswith(TIMINGS)}
        assert {"accuracy", "balanced_accuracy", "macro_f1", "loss"} <= set(metrics)
        for key, value in metrics.items():
            if isinstance(value, float):
                assert resumed[split][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (split, key)
            else:
                assert resumed[split][key] == value, (split, key)
    # The step-by-step losses too: those before the kill come from the checkpoint, the rest
    # from the rerun.
    expected, got = losses(tmp_path / "reference"), losses(killed)
    assert sorted(got) == list(range(1, MAX_STEPS + 1))
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, rel=1e-5), step
    torch.testing.assert_close(
        load_file(killed / "model.safetensors"),
        load_file(tmp_path / "reference" / "model.safetensors"),
    )
