"""The `fer-hf` console script: argument handling and printing only.

Every subcommand imports its library module lazily, so `fer-hf --help` stays fast.
Each subcommand owns one `_add_<name>` (parser) and one `_run_<name>` (handler) below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="Turn AffectNet / FER2013 / a class-folder tree into a DatasetDict on disk.",
        description="Turn a raw dataset into a `datasets.DatasetDict` (save_to_disk) with the "
        "fer-hf label schema, a report and plots.",
    )
    p.add_argument("source", choices=["affectnet", "fer2013", "folder"], help="dataset kind")
    p.add_argument("--data-dir", required=True, help="folder holding the raw dataset")
    p.add_argument("--output", required=True, help="folder to write the prepared DatasetDict to")
    p.add_argument(
        "--classes",
        type=int,
        choices=[7, 8],
        default=None,
        help="7 (drop contempt) or 8 classes; default 8 for AffectNet and for a folder "
        "tree with a contempt folder, 7 otherwise",
    )
    p.add_argument(
        "--resample",
        choices=["none", "oversample", "undersample", "sqrt"],
        default="none",
        help="resampling of the train split (default: none)",
    )
    p.add_argument(
        "--target-count",
        type=int,
        default=None,
        help="with --resample oversample/undersample: per-class count (default: the "
        "largest / smallest class)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of train carved out (stratified) when there is no validation "
        "split (default: 0.1)",
    )
    p.add_argument("--seed", type=int, default=42, help="seed for carving and resampling")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes for decoding")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="store crops resized so the shorter side is N px (default: keep size)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="AffectNet original release: face-box margin as a fraction of its size",
    )
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from fer_hf.data.prepare import format_class_table, prepare

    report = prepare(
        source=args.source,
        data_dir=args.data_dir,
        output=args.output,
        num_classes=args.classes,
        resample=args.resample,
        target_count=args.target_count,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_proc=args.num_proc,
        image_size=args.image_size,
        margin=args.margin,
    )
    print(format_class_table(report))
    for skipped in report["skipped"][:10]:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
    if report["num_skipped"] > 10:
        print(f"  ... and {report['num_skipped'] - 10} more")
    print(f"Wrote {args.output} ({report['num_skipped']} records skipped; see prepare_report.json)")
    if args.source != "folder":  # a class-folder tree's licence is unknown to fer-hf
        from fer_hf.hub import render_dataset_card

        render_dataset_card(args.output).save(f"{args.output}/README.md")
        print(f"Wrote the dataset card {args.output}/README.md (schema, recipe, class table)")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="Export a model folder to ONNX (Optimum), optionally int8, with a parity check.",
        description="Export MODEL_DIR to OUT/model.onnx through Optimum (plus "
        "OUT/model_quantized.onnx with --quantize), check ONNX Runtime against PyTorch and write "
        "OUT/parity.json. OUT loads with optimum.onnxruntime.ORTModelForImageClassification.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a save_pretrained model folder")
    p.add_argument("--output", required=True, metavar="OUT", help="export folder to write")
    p.add_argument(
        "--quantize",
        choices=["dynamic", "static"],
        default=None,
        help="also write an int8 model: dynamic, or static (needs --calibration)",
    )
    p.add_argument(
        "--calibration",
        metavar="DATA",
        default=None,
        help="images for static calibration and the parity checks: a `fer-hf "
        "prepare` folder, a class-folder tree or an image folder",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    p.add_argument(
        "--num-samples",
        type=int,
        default=512,
        help="validation images for the parity checks (default: 512)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed that picks the sample images")
    p.add_argument(
        "--no-speed",
        action="store_true",
        help="skip timing fp32 vs int8 (it names the faster file in parity.json)",
    )
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from fer_hf.data import image_source
    from fer_hf.export import export_model, format_report

    report = export_model(
        args.model_dir,
        args.output,
        quantize_mode=args.quantize,
        data=None if args.calibration is None else image_source(args.calibration),
        opset=args.opset,
        num_validation=args.num_samples,
        seed=args.seed,
        measure_speed=not args.no_speed,
    )
    print(format_report(report))
    print(f"Wrote {args.output} (see parity.json)")
    if not report["passed"]:
        print("fer-hf export: a parity check failed; see parity.json", file=sys.stderr)
        return 1
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="Detect faces and classify their expressions in images, folders and videos.",
        description="Detect faces (BlazeFace DNN by default) and classify each face's expression. "
        "Writes one JSON record per image or video frame (to stdout, or --output "
        ".jsonl/.json/.csv). Unreadable inputs are listed and skipped; the run then exits 1, "
        "after writing every result it could.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or videos")
    p.add_argument(
        "--model",
        default=None,
        help="model folder: PyTorch, or a `fer-hf export` folder for the onnx "
        "backends (default: checkpoints/fer2013-factorized)",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "onnx-int8"],
        default="torch",
        help="inference engine (default: torch)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="results file: .jsonl (JSON Lines), .json (one JSON array) or .csv (one row per "
        "face); default: JSON Lines on stdout",
    )
    p.add_argument(
        "--annotate",
        metavar="OUTDIR",
        default=None,
        help="write copies with boxes, labels and scores to OUTDIR",
    )
    p.add_argument(
        "--frame-stride", type=int, default=1, help="videos: classify every Nth frame (default: 1)"
    )
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="inputs are already face crops: classify each whole image",
    )
    p.add_argument(
        "--detector",
        choices=["blazeface", "blazeface-video", "haar", "haar-video"],
        default="blazeface",
        help="blazeface (default): MediaPipe's full-range BlazeFace DNN, two passes (faces from "
        "about 30 px in a 640x480 photo); videos use its one-pass blazeface-video setting. "
        "haar: OpenCV's Haar cascades (photos; videos use haar-video); *-video: fast settings "
        "for every input",
    )
    p.add_argument(
        "--no-align",
        action="store_true",
        help="classify the face boxes as they are, without rotating each face upright by its "
        "eye keypoints (BlazeFace only)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.15,
        help="face box growth per side, as a fraction of its size (default: 0.15)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for the model and the detector"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels, before decoding (default: 89,478,485; 0: no limit)",
    )
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from fer_hf.inference import DEFAULT_MAX_PIXELS, DEFAULT_MODEL_DIR, FerPredictor
    from fer_hf.inference.files import format_summary, predict_files

    model = args.model
    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise FileNotFoundError(
                f"No --model given and the default checkpoint {DEFAULT_MODEL_DIR} does not "
                "exist yet; pass --model DIR (a trained model, `fer-hf init` or `fer-hf export` "
                "folder)."
            )
        model = DEFAULT_MODEL_DIR
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    predictor = FerPredictor.from_pretrained(
        model,
        backend=args.backend,
        detector=args.detector,
        margin=args.margin,
        num_threads=args.threads,
        max_pixels=max_pixels,
        align=not args.no_align,
    )
    summary = predict_files(
        predictor,
        args.inputs,
        output=args.output,
        annotate_dir=args.annotate,
        frame_stride=args.frame_stride,
        detect_faces=not args.no_detect,
    )
    for line in summary["ignored"]:
        print(f"ignored {line}", file=sys.stderr)
    for line in summary["failed"]:
        print(f"failed {line}", file=sys.stderr)
    print(format_summary(summary), file=sys.stderr)
    # Everything readable was written; any input that could not be read makes the run fail.
    return 1 if summary["failed"] or not summary["images"] + summary["videos"] else 0


def _add_init(sub: argparse._SubParsersAction) -> None:
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


def _add_publish(sub: argparse._SubParsersAction) -> None:
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


def _add_publish_space(sub: argparse._SubParsersAction) -> None:
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


def _add_train(sub: argparse._SubParsersAction) -> None:
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


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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
        choices=["none", "flip", "tencrop"],
        default="none",
        help="test-time augmentation: `flip` averages each image with its mirror, `tencrop` "
        "the four corner and the centre crops (5/6 of the side, resized to the input size) and "
        "their mirrors (default: none)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--output", required=True, help="folder for metrics.json and the plot")
    p.set_defaults(func=_run_evaluate)


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


def _add_release(sub: argparse._SubParsersAction) -> None:
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


# Registry of subcommands, in `--help` order. Later subcommands append here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_prepare,
    _add_export,
    _add_predict,
    _add_init,
    _add_publish,
    _add_publish_space,
    _add_train,
    _add_evaluate,
    _add_release,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-hf", description="Facial expression recognition on the Hugging Face stack."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # Errors a user can cause carry a full message; a traceback would only hide it.
        print(f"fer-hf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
