"""Validation accuracy and balanced accuracy per training step of finished train.py runs (PNG).

    .venv/bin/python bench/training_curves.py runs/baseline_fer2013 runs/vit_fer2013 \
        runs/factorized_distilled --output docs/training_curves.png

Reads each run folder's `trainer_state.json` (the Trainer's log history: one entry per
evaluation) and plots accuracy (solid) and balanced accuracy (dashed) against the number of
training images seen (step x batch size), with the run's name, best checkpoint and wall time in
the legend. A Trainer `checkpoint-N` folder (a run stopped there) takes its run's model kind and
is named `run/checkpoint-N`. Prints one JSON document with the plotted points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_hf.artifacts import is_trainer_checkpoint


def history(run: Path) -> dict:
    state_file = run / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(
            f"{run} has no trainer_state.json; pass the output_dir of a finished train.py run."
        )
    state = json.loads(state_file.read_text())
    batch = state.get("train_batch_size") or 64
    points = [
        {
            "step": entry["step"],
            "images": entry["step"] * batch,
            "accuracy": entry["eval_accuracy"],
            "balanced_accuracy": entry["eval_balanced_accuracy"],
        }
        for entry in state["log_history"]
        if "eval_accuracy" in entry
    ]
    runtime = next((e["train_runtime"] for e in state["log_history"] if "train_runtime" in e), None)
    summary_file = run / "train_summary.json"
    if not summary_file.is_file() and is_trainer_checkpoint(run):
        summary_file = run.parent / "train_summary.json"  # a run stopped at this checkpoint
    kind = json.loads(summary_file.read_text())["model_kind"] if summary_file.is_file() else None
    return {
        "run": str(run),
        "model_kind": kind,
        "points": points,
        "best_metric": state.get("best_metric"),
        "train_runtime_s": runtime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="train.py output folders")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    curves = [history(run) for run in args.runs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve, color in zip(
        curves, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False
    ):
        images = [p["images"] / 1000 for p in curve["points"]]
        run = Path(curve["run"])
        name = f"{run.parent.name}/{run.name}" if is_trainer_checkpoint(run) else run.name
        label = f"{curve['model_kind'] or name} ({name}"
        if curve["train_runtime_s"]:
            label += f", {curve['train_runtime_s'] / 60:.0f} min"
        label += ")"
        ax.plot(images, [p["accuracy"] for p in curve["points"]], "-o", color=color, label=label)
        ax.plot(
            images, [p["balanced_accuracy"] for p in curve["points"]], "--", color=color, alpha=0.7
        )
    ax.set_xlabel("training images seen (thousands)")
    ax.set_ylabel("FER2013 validation accuracy (solid) / balanced accuracy (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(json.dumps({"output": str(args.output), "runs": curves}, indent=2))


if __name__ == "__main__":
    main()
