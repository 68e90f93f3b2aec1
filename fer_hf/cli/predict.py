"""`fer-hf predict`: expressions of the faces in images and videos.

Parsing and printing only; each handler imports the library lazily.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The default model, named here (the entry point), not by the library: the bundled release of
# the working directory's checkout, else of the checkout this package runs from (an editable
# install), else the published release on the Hub.
DEFAULT_MODEL = "checkpoints/fer2013-factorized"
DEFAULT_HUB_MODEL = "fer-hf/fer2013-factorized"


def default_model() -> str:
    """The model `fer-hf predict` uses without --model (see DEFAULT_MODEL)."""
    for folder in (Path(DEFAULT_MODEL), Path(__file__).resolve().parents[2] / DEFAULT_MODEL):
        if (folder / "config.json").is_file():
            return str(folder)
    return DEFAULT_HUB_MODEL


def add_predict(sub: argparse._SubParsersAction) -> None:
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
        f"backends (default: {DEFAULT_MODEL} of the checkout, else {DEFAULT_HUB_MODEL})",
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
    from fer_hf.inference import DEFAULT_MAX_PIXELS, FerPredictor
    from fer_hf.inference.files import format_summary, predict_files

    model = args.model if args.model is not None else default_model()
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
