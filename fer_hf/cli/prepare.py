"""`fer-hf prepare`: a raw AffectNet / FER2013 / class-folder source -> a prepared dataset.

Parsing and printing only; each handler imports the library lazily.
"""

from __future__ import annotations

import argparse


def add_prepare(sub: argparse._SubParsersAction) -> None:
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
