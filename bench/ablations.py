"""The training ablations of the FER2013 comparison, each at one shared small budget.

    OMP_NUM_THREADS=1 python bench/ablations.py --steps 2000 --teacher checkpoints/fer2013-baseline

Every variant trains the factorized model of `--config` (default
configs/factorized_fer2013_cpu.yaml) for the same `--steps` steps of 64 faces with the same seed,
through `train.py`, and is scored on the validation split (plain and with flip TTA). Only the
named change differs from the `reference` run (the oversampled split, `factorization=depthwise`,
no teacher, fp32 + channels-last):

- imbalance: `reference` (oversampled split) vs `no_resampling` (the split as it is) vs
  `class_balanced_sampler` (the split as it is, `--imbalance sampler`);
- factorization: `factorization_none|spatial|both` (`depthwise` is the reference);
- `distilled` (`--teacher_model`, logit KD) vs the reference trained alone;
- `bf16` (`--precision bf16`) vs the reference's fp32.

The split without resampling is prepared once (`fer-hf prepare fer2013 --resample none`) from
`--fer2013-dir` when `--data-none` does not exist. A finished run (its `train_summary.json`
records the same command) is reused; `--force` trains it again. Prints one JSON document (also
written to `--output`) and, with `--table`, a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_hf.artifacts import SUMMARY_FILE, machine_info, read_json, write_json  # noqa: E402
from fer_hf.training.precision import cpu_summary  # noqa: E402

GROUPS = {
    "reference": "the reference",
    "no_resampling": "imbalance",
    "class_balanced_sampler": "imbalance",
    "factorization_none": "factorization",
    "factorization_spatial": "factorization",
    "factorization_both": "factorization",
    "distilled": "distillation",
    "bf16": "precision",
}


def variant_args(name: str, args) -> list[str]:
    """train.py arguments that make `name` differ from the reference."""
    if name == "no_resampling":
        return ["--dataset", str(args.data_none)]
    if name == "class_balanced_sampler":
        return ["--dataset", str(args.data_none), "--imbalance", "sampler"]
    if name.startswith("factorization_"):
        value = name.removeprefix("factorization_")
        return ["--model_overrides", json.dumps({"factorization": value})]
    if name == "distilled":
        if not args.teacher:
            raise SystemExit("The `distilled` variant needs --teacher (a fer-hf model folder).")
        return ["--teacher_model", str(args.teacher)]
    if name == "bf16":
        return ["--precision", "bf16"]
    return []


def command(name: str, args) -> list[str]:
    steps = str(args.steps)
    return [
        sys.executable,
        str(ROOT / "train.py"),
        str(args.config),
        "--dataset",
        str(args.data),
        "--max_steps",
        steps,
        "--eval_strategy",
        "steps",
        "--eval_steps",
        steps,
        "--save_strategy",
        "steps",
        "--save_steps",
        steps,
        "--seed",
        str(args.seed),
        "--report_to",
        "none",
        "--output_dir",
        str(args.runs_dir / name),
        *variant_args(name, args),
    ]


def ensure_unresampled(args) -> None:
    if (args.data_none / "dataset_dict.json").exists() or not any(
        name in ("no_resampling", "class_balanced_sampler") for name in args.only
    ):
        return
    if not args.fer2013_dir.is_dir():
        raise SystemExit(
            f"{args.data_none} does not exist and --fer2013-dir {args.fer2013_dir} is not a "
            "folder: prepare the split without resampling first (fer-hf prepare fer2013 "
            "--data-dir ... --output ... --resample none)."
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_hf.cli",
            "prepare",
            "fer2013",
            "--data-dir",
            str(args.fer2013_dir),
            "--output",
            str(args.data_none),
            "--resample",
            "none",
        ],
        check=True,
    )


def flip_metrics(run_dir: Path, data: Path) -> dict:
    """Validation metrics of the run's final model with flip TTA (`fer-hf evaluate`'s code);
    its metrics.json goes to `<run>/eval-flip/`."""
    from fer_hf.training.evaluation import evaluate_model

    return evaluate_model(run_dir, data, run_dir / "eval-flip", split="validation", tta="flip")


def model_cost(run_dir: Path) -> tuple[int, float]:
    """(parameters, MFLOPs per face) of the run's model at its processor's input size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fer_hf.models import load_model_folder

    model, processor = load_model_folder(run_dir)
    size = processor.size
    example = torch.zeros(1, model.config.num_channels, size["height"], size["width"])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixel_values=example)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e6


def run_variant(name: str, args) -> dict:
    cmd = command(name, args)
    out = args.runs_dir / name
    summary_path = out / SUMMARY_FILE
    shown = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    done = (
        summary_path.exists()
        and read_json(summary_path, "a training summary").get("bench_command") == shown
    )
    if args.force or not done:
        print(f"[ablations] {name}: {shown}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        summary = read_json(summary_path, "a training summary")
        summary["bench_command"] = shown
        write_json(summary_path, summary)
    summary = read_json(summary_path, "a training summary")
    metrics = summary["eval_metrics"]
    data = args.data_none if name in ("no_resampling", "class_balanced_sampler") else args.data
    flip = flip_metrics(out, data)
    params, mflops = model_cost(out)
    return {
        "group": GROUPS[name],
        "command": shown,
        "params": params,
        "mflops": round(mflops, 2),
        "accuracy": round(metrics["accuracy"], 4),
        "balanced_accuracy": round(metrics["balanced_accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "flip_accuracy": round(flip["accuracy"], 4),
        "flip_balanced_accuracy": round(flip["balanced_accuracy"], 4),
        "train_runtime_s": round(summary["train_runtime_s"], 1),
        "train_samples_per_s": summary.get("train_samples_per_s"),
    }


def table(result: dict) -> str:
    lines = [
        "| variant | group | MFLOPs | accuracy | balanced acc. | macro-F1 "
        "| flip TTA: acc / bal. acc | train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["variants"].items():
        lines.append(
            f"| {name} | {row['group']} | {row['mflops']:.2f} | {row['accuracy']:.4f} | "
            f"{row['balanced_accuracy']:.4f} | {row['macro_f1']:.4f} | "
            f"{row['flip_accuracy']:.4f} / {row['flip_balanced_accuracy']:.4f} | "
            f"{row['train_runtime_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/factorized_fer2013_cpu.yaml")
    parser.add_argument("--data", type=Path, default=Path("prepared/fer2013"))
    parser.add_argument("--data-none", type=Path, default=Path("prepared/fer2013-none"))
    parser.add_argument("--fer2013-dir", type=Path, default=Path("../shared/data/fer2013"))
    parser.add_argument("--teacher", type=Path, default=None, help="teacher of `distilled`")
    parser.add_argument("--steps", type=int, default=2000, help="the shared budget (steps of 64)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    parser.add_argument("--force", action="store_true", help="retrain finished runs")
    parser.add_argument("--output", type=Path, default=Path("bench/results/ablations.json"))
    parser.add_argument("--table", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()
    ensure_unresampled(args)
    variants = {}
    for name in args.only:
        variants[name] = run_variant(name, args)
        print(f"[ablations] {name}: {variants[name]}", file=sys.stderr, flush=True)
    result = {
        "bench": "ablations",
        "machine": machine_info(cpu_summary(), threads=os.environ.get("OMP_NUM_THREADS")),
        "config": str(args.config.relative_to(ROOT) if args.config.is_absolute() else args.config),
        "steps": args.steps,
        "batch_size": 64,
        "seed": args.seed,
        "variants": variants,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, result)
    print(json.dumps(result, indent=2))
    if args.table:
        print(table(result))


if __name__ == "__main__":
    main()
