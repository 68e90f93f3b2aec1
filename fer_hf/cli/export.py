"""`fer-hf export`: a model folder -> ONNX (+ int8) with parity.json.

Parsing and printing only; each handler imports the library lazily.
"""

from __future__ import annotations

import argparse
import sys


def add_export(sub: argparse._SubParsersAction) -> None:
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
