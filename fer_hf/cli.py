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
    p.add_argument("--classes", type=int, choices=[7, 8], default=None,
                   help="7 (drop contempt) or 8 classes; default 8 for AffectNet, 7 otherwise")
    p.add_argument("--resample", choices=["none", "oversample", "undersample", "sqrt"],
                   default="none", help="resampling of the train split (default: none)")
    p.add_argument("--target-count", type=int, default=None,
                   help="with --resample oversample: per-class count (default: the largest class)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of train carved out (stratified) when there is no validation "
                   "split (default: 0.1)")
    p.add_argument("--seed", type=int, default=42, help="seed for carving and resampling")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes for decoding")
    p.add_argument("--image-size", type=int, default=None,
                   help="store crops resized so the shorter side is N px (default: keep size)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="AffectNet original release: face-box margin as a fraction of its size")
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
    print(f"Wrote {args.output} ({report['num_skipped']} records skipped; see prepare_report.json)")
    return 0


# Registry of subcommands, in `--help` order. Later subcommands append here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_prepare]


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
