"""`fer-hf release`, `fer-hf publish`, `fer-hf publish-space`: release folders and the Hub.

Parsing and printing only; each handler imports the library lazily.
"""

from __future__ import annotations

import argparse
import sys


def add_release(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "release",
        help="Turn a finished training run into a release folder (fp16 weights, metrics, card).",
        description="Write OUT from a train.py output_dir: safetensors weights stored in float16 "
        "(loading gives float32), config with auto_map and the model code, processor, "
        "metrics.json + confusion_matrix.png measured on the release weights, "
        "train_summary.json, onnx/ (fp32 + int8, parity.json) and the model card as README.md. "
        "`fer-hf publish OUT --repo-id ID` then uploads it.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished train.py output_dir")
    p.add_argument(
        "--output",
        required=True,
        metavar="OUT",
        help="release folder to write, e.g. checkpoints/fer2013-factorized",
    )
    p.add_argument(
        "--data",
        required=True,
        help="a `fer-hf prepare` folder (or class-folder tree) to evaluate on; also "
        "calibrates and checks the int8 model",
    )
    p.add_argument(
        "--split", default="validation", help="split the metrics come from (default: validation)"
    )
    p.add_argument(
        "--tta",
        choices=["none", "flip", "tencrop"],
        default="none",
        help="test-time augmentation for the metrics (default: none)",
    )
    p.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="export onnx/ (fp32 + int8); default: only when the fp32 ONNX file "
        "would be under 10 MB",
    )
    p.add_argument(
        "--quantize",
        choices=["static", "dynamic"],
        default=None,
        help="int8 mode for onnx/ (default: static for CNNs, dynamic for ViTs)",
    )
    p.add_argument(
        "--bench",
        nargs="+",
        default=[],
        metavar="JSON",
        help="bench/models.py / bench/inference.py outputs, kept as bench*.json for "
        "the card's speed section",
    )
    p.add_argument(
        "--repo-id",
        default=None,
        help="Hub id the card is written for (default: fer-hf/<OUT folder name>)",
    )
    p.add_argument(
        "--license",
        default=None,
        help="licence id of the weights (default: inherited from the training data)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--no-speed", action="store_true", help="skip timing the ONNX files")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty OUT (only once the new release is built)",
    )
    p.set_defaults(func=_run_release)


def _run_release(args: argparse.Namespace) -> int:
    from fer_hf.release import build_release, format_release_report

    report = build_release(
        args.run_dir, args.output, args.data, split=args.split, tta=args.tta, onnx=args.onnx,
        quantize=args.quantize, bench_files=args.bench, repo_id=args.repo_id,
        license=args.license, overwrite=args.overwrite, batch_size=args.batch_size,
        measure_speed=not args.no_speed,
    )  # fmt: skip
    print(format_release_report(report))
    print(f"Wrote {args.output}")
    if not report["passed"]:
        print("fer-hf release: a parity check failed; see the lines above", file=sys.stderr)
        return 1
    return 0


def add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="Publish a release folder (model, card, ONNX) to the Hugging Face Hub.",
        description="Assemble the exact model repository (safetensors weights, config with "
        "auto_map and the model code, processor, onnx/, the model card rendered from the run's "
        "metrics.json / train_summary.json / bench JSON, the confusion matrix) and upload it in "
        "one commit. The remote repository then equals the folder.",
    )
    p.add_argument("model_dir", help="release folder: model + metrics.json + train_summary.json")
    p.add_argument("--repo-id", required=True, help="Hub repository, OWNER/NAME")
    p.add_argument(
        "--onnx",
        default=None,
        help="`fer-hf export` folder of this model, published as onnx/ (default: MODEL_DIR/onnx "
        "when it holds model.onnx)",
    )
    p.add_argument(
        "--bench",
        nargs="+",
        default=[],
        metavar="JSON",
        help="bench/models.py / bench/inference.py outputs for the card's speed section "
        "(MODEL_DIR/bench*.json are read too)",
    )
    p.add_argument(
        "--license",
        default=None,
        help="licence id of the weights (default: inherited from the training data)",
    )
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument(
        "--dry-run",
        default=None,
        metavar="OUT",
        help="write the repository folder to OUT (new or empty) and upload nothing",
    )
    p.set_defaults(func=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from fer_hf.hub import PublishError, publish_model

    try:
        where = publish_model(
            args.model_dir, args.repo_id, onnx_dir=args.onnx, bench_files=args.bench,
            license=args.license, private=args.private, dry_run=args.dry_run,
        )  # fmt: skip
    except PublishError as err:
        print(f"fer-hf publish: error: {err}", file=sys.stderr)
        return 2
    print(f"Wrote {where}" if args.dry_run else f"Published {args.repo_id}: {where}")
    return 0


def add_publish_space(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish-space",
        help="Publish the Gradio demo as a Hugging Face Space.",
        description="Assemble the Space (app, requirements, README with the Spaces YAML header "
        "naming its models, a copy of fer_hf) and upload it in one commit.",
    )
    p.add_argument("--repo-id", required=True, help="Space repository, OWNER/NAME")
    p.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="ID",
        help="Hub model ids the Space serves (listed in its README header)",
    )
    p.add_argument("--space-dir", default="space", help="folder holding the app (default: space)")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument(
        "--dry-run",
        default=None,
        metavar="OUT",
        help="write the Space folder to OUT (new or empty) and upload nothing",
    )
    p.set_defaults(func=_run_publish_space)


def _run_publish_space(args: argparse.Namespace) -> int:
    from fer_hf.hub import PublishError, publish_space

    try:
        where = publish_space(
            args.space_dir, args.repo_id, models=args.models, private=args.private,
            dry_run=args.dry_run,
        )  # fmt: skip
    except PublishError as err:
        print(f"fer-hf publish-space: error: {err}", file=sys.stderr)
        return 2
    print(f"Wrote {where}" if args.dry_run else f"Published Space {args.repo_id}: {where}")
    return 0
