"""`fer-hf init`, `fer-hf train`, `fer-hf evaluate`: model folders, training runs, metrics.

Parsing and printing only; each handler imports the library lazily.
"""

from __future__ import annotations

import argparse
import sys


def add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="Write an untrained, loadable model folder (baseline, vit or factorized).",
        description="Write an untrained model folder: config.json (with auto_map), "
        "model.safetensors, preprocessor_config.json and the model code, loadable with "
        "from_pretrained / pipeline(..., trust_remote_code=True).",
    )
    p.add_argument("kind", choices=["baseline", "vit", "factorized"], help="model kind")
    p.add_argument("--output", required=True, help="folder to create (must be new or empty)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input side in px (default: 64 baseline, 224 vit, 48 factorized)",
    )
    p.add_argument(
        "--classes",
        type=int,
        choices=[7, 8],
        default=7,
        help="7 (no contempt) or 8 expression classes (default: 7)",
    )
    p.add_argument(
        "--valence-arousal", action="store_true", help="add the valence/arousal regression head"
    )
    p.add_argument(
        "--variant",
        default=None,
        help="backbone size: resnet18|resnet50 (baseline), vit-base|vit-tiny (vit)",
    )
    gray = p.add_mutually_exclusive_group()
    gray.add_argument(
        "--grayscale",
        dest="grayscale",
        action="store_true",
        default=None,
        help="convert colour inputs to gray (default for factorized)",
    )
    gray.add_argument(
        "--color",
        dest="grayscale",
        action="store_false",
        help="keep colour inputs (default for baseline and vit)",
    )
    p.set_defaults(func=_run_init)


def _run_init(args: argparse.Namespace) -> int:
    from fer_hf.models import init_model_folder

    folder = init_model_folder(
        args.kind,
        args.output,
        image_size=args.image_size,
        num_classes=args.classes,
        valence_arousal=args.valence_arousal,
        grayscale=args.grayscale,
        variant=args.variant,
    )
    print(f"Wrote an untrained {args.kind} model to {folder}")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="Train a model with the Trainer: one YAML config and/or flags (same as train.py).",
        description="Same as `python train.py`: `fer-hf train CONFIG.yaml [--flag value ...]` or "
        "flags only. `fer-hf train --help` lists every argument.",
        # Every token, `--flags` and `--help` included, goes to train.py's own parser.
        prefix_chars="\x00",
        add_help=False,
    )
    p.add_argument("train_args", nargs="*", help="a YAML/JSON config and/or train.py flags")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from fer_hf.training.run import main as train_main

    return train_main(args.train_args, prog="fer-hf train")


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Evaluate a trained model on a prepared split or a class-folder tree.",
        description="Evaluate MODEL_DIR on DATA (a `fer-hf prepare` folder or a class-folder "
        "tree): writes OUT/metrics.json and OUT/confusion_matrix.png and prints a table. Several "
        "model folders (`fer-hf evaluate A B C DATA`) are evaluated as an ensemble that averages "
        "their probabilities.",
    )
    p.add_argument(
        "model_dir",
        nargs="+",
        help="a trained fer-hf model folder; several folders form an ensemble",
    )
    p.add_argument("data", help="a `fer-hf prepare` folder or a class-folder tree")
    p.add_argument(
        "--split",
        default="test",
        help="split to evaluate (default: test); a tree without split folders is used whole",
    )
    p.add_argument(
        "--tta",
        type=_tta_modes,
        default=["none"],
        metavar="MODE[,MODE...]",
        help="test-time augmentation (none, flip, tencrop): `flip` averages each image with its "
        "mirror, `tencrop` the four corner and the centre crops and their mirrors (a model "
        "trained on random crops gets crops of its training size; any other, crops of 5/6 of "
        "the side resized to its input size). An ensemble takes one mode for all models or one "
        "per model, comma-separated in the models' order, e.g. `--tta tencrop,tencrop,flip` "
        "(default: none)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--output", required=True, help="folder for metrics.json and the plot")
    p.set_defaults(func=_run_evaluate)


def _tta_modes(value: str) -> list[str]:
    """`--tta`'s comma-separated modes; each must be known (the count is checked per ensemble)."""
    from fer_hf.training.evaluation import TTA_MODES

    modes = [mode.strip() for mode in value.split(",")]
    unknown = [mode for mode in modes if mode not in TTA_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode {unknown[0]!r} in {value!r}; expected one of: {', '.join(TTA_MODES)}"
        )
    return modes


def _run_evaluate(args: argparse.Namespace) -> int:
    from fer_hf.training.evaluation import evaluate_model, format_metrics_table

    metrics = evaluate_model(
        args.model_dir[0] if len(args.model_dir) == 1 else args.model_dir,
        args.data,
        args.output,
        split=args.split,
        tta=args.tta,
        batch_size=args.batch_size,
    )
    print(format_metrics_table(metrics))
    for skipped in metrics["skipped"]:
        print(f"skipped {skipped['file']}: {skipped['reason']}", file=sys.stderr)
    if metrics["num_skipped"]:
        print(f"{metrics['num_skipped']} files skipped (listed in metrics.json)", file=sys.stderr)
    print(f"Wrote {args.output}/metrics.json and {args.output}/confusion_matrix.png")
    return 0


def add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="Average the weights of several runs of one architecture (SWA / model soup).",
        description="Write OUTPUT: a model folder whose weights are the mean of the MODEL_DIRs' "
        "(runs or releases of one architecture and label schema, e.g. the ends of successive "
        "warm-restart cycles). Batch-norm statistics are recomputed on --data's training images "
        "(required for models with batch norm: the ResNet, the factorized CNN and a ViT with "
        "the convolutional tokeniser, as released); one such folder alone is copied with its "
        "statistics recomputed. A Trainer checkpoint-N folder takes its "
        "run's train_summary.json. Release the result "
        "with `fer-hf release OUTPUT ...`.",
    )
    p.add_argument(
        "model_dir",
        nargs="+",
        help="model folders (runs or releases): two or more, or one with batch norm to recompute "
        "its statistics",
    )
    p.add_argument("--output", required=True, help="folder to write (must be new or empty)")
    p.add_argument(
        "--data",
        default=None,
        help="a `fer-hf prepare` folder or class-folder tree for the batch-norm statistics",
    )
    p.add_argument("--split", default="train", help="split of --data to use (default: train)")
    p.add_argument(
        "--weights",
        default=None,
        help="comma-separated weights, one per folder (default: equal); normalised to sum 1",
    )
    p.add_argument(
        "--bn-images",
        type=int,
        default=None,
        help="training images for the batch-norm statistics (default: 6,400)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image sample (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    p.set_defaults(func=_run_average)


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--weights must be comma-separated numbers (e.g. 1,1,2), got {text!r}."
        ) from None


def _run_average(args: argparse.Namespace) -> int:
    import shlex

    from fer_hf.training.averaging import BN_IMAGES, average_models

    record = average_models(
        args.model_dir,
        args.output,
        weights=_parse_weights(args.weights),
        data=args.data,
        split=args.split,
        bn_images=BN_IMAGES if args.bn_images is None else args.bn_images,
        batch_size=args.batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
        command=shlex.join(["fer-hf", *sys.argv[1:]]) if sys.argv[1:2] == ["average"] else None,
    )
    for source, weight in zip(record["sources"], record["weights"], strict=True):
        print(f"{weight:.4f}  {source}")
    bn = record["batch_norm_recomputed"]
    if bn:
        print(f"batch-norm statistics recomputed on {bn['images']} {bn['split']} images")
    else:
        print("no batch-norm layers: weights averaged, no data needed")
    print(f"Wrote {args.output} (release it with `fer-hf release {args.output} ...`)")
    return 0
