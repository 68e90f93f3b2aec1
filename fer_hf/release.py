"""`fer-hf release`: a finished training run -> a release folder (fp16 safetensors, metrics, card).

The workflow that composes the layers (evaluate, export, card), so it lives above all of them:
imports fer_hf.training, export and models inside functions (torch never at import), hub for the
card; never the cli. Every file of the release is written once.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .artifacts import (
    BENCH_GLOB,
    ONNX_SUBFOLDER,
    ORT_CONFIG_FILE,
    PREPARE_REPORT_FILE,
    SUMMARY_FILE,
    overlaps,
    read_json,
)
from .hub.model_card import _REPO_ID, render_model_card
from .hub.publish import code_files
from .hub.release import load_release
from .hub.sources import data_source

logger = logging.getLogger(__name__)

# `--onnx` by default only when the fp32 ONNX file (about 4 bytes per parameter) stays under this:
# three releases share a 40 MB budget in the repository.
ONNX_AUTO_MAX_BYTES = 10_000_000
FP16_MAX = 65504.0  # largest finite float16; a tensor beyond it stays float32
# The fp16 weights are checked against the run's fp32 weights on the evaluation split.
FP16_MIN_TOP1_AGREEMENT = 0.99
FP16_CHECK_IMAGES = 1024


def refresh_model_code(folder: str | Path) -> list[str]:
    """Copy the package's current fer_hf/models code files over a model folder's copies (the
    modules its `auto_map` needs); returns the names of the files that changed."""
    from . import models

    folder, source = Path(folder), Path(models.__file__).parent
    changed = []
    for name in code_files(folder):
        if (source / name).is_file() and (source / name).read_bytes() != (
            folder / name
        ).read_bytes():
            shutil.copy2(source / name, folder / name)
            changed.append(name)
    return changed


def _check_inputs(run_dir: Path, output: Path, data: Path, overwrite: bool, bench: list[Path]):
    """Fail before any work: missing run files, an output in the way, paths that would collide."""
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"Run folder {run_dir} does not exist or has no config.json; pass the `output_dir` "
            "of a finished `train.py` run."
        )
    for name, what in (
        ("preprocessor_config.json", "the image processor"),
        (SUMMARY_FILE, "train.py's training summary"),
    ):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir} has no {name} ({what}); a finished `train.py` run writes it. "
                "Release the run's output_dir, not a checkpoint-* folder."
            )
    if not list(run_dir.glob("*.safetensors")):
        raise FileNotFoundError(f"{run_dir} has no *.safetensors weights; train.py saves them.")
    if not data.exists():
        raise FileNotFoundError(f"--data {data} does not exist; pass the prepared dataset.")
    for path in bench:
        if not path.is_file():
            raise FileNotFoundError(f"bench file {path} does not exist.")
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is a file; pass a folder.")
    for path, what in (
        (run_dir, "run folder"),
        (data, "--data"),
        *((b, "bench file") for b in bench),
    ):
        if overlaps(path, output):
            raise ValueError(
                f"--output {output} overlaps the {what} {path}; write the release to a separate "
                "folder (e.g. checkpoints/NAME) so no input is ever modified or replaced."
            )
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(
            f"--output {output} already exists and is not empty; pass --overwrite to replace it "
            "or choose another folder."
        )


def _fp16_state_dict(model) -> tuple[dict, list[str]]:
    """Floating tensors in float16, except those beyond float16's range (kept float32)."""
    state, kept = {}, []
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            finite = tensor.abs().nan_to_num(nan=0.0, posinf=0.0)
            if finite.numel() and float(finite.max()) > FP16_MAX:
                kept.append(name)
                tensor = tensor.float()
            else:
                tensor = tensor.half()
        state[name] = tensor.contiguous()
    if kept:
        logger.warning("Kept %d tensors in float32 (beyond float16's range): %s", len(kept), kept)
    return state, kept


def _compare_logits(run_model, release_model, processor, dataset, batch_size: int) -> dict:
    """Logits of the run's fp32 weights vs the release's fp16-stored ones on the same images."""
    import torch

    from .training.transforms import FerTransform, collate

    count = min(len(dataset), FP16_CHECK_IMAGES)
    loader = torch.utils.data.DataLoader(
        dataset.select(range(count)).with_transform(FerTransform(processor)),
        batch_size=batch_size,
        collate_fn=collate,
    )
    logit_diff = prob_diff = 0.0
    agree = 0
    with torch.inference_mode():
        for batch in loader:
            reference = run_model(pixel_values=batch["pixel_values"]).logits
            released = release_model(pixel_values=batch["pixel_values"]).logits
            logit_diff = max(logit_diff, float((reference - released).abs().max()))
            prob_diff = max(
                prob_diff, float((reference.softmax(-1) - released.softmax(-1)).abs().max())
            )
            agree += int((reference.argmax(-1) == released.argmax(-1)).sum())
    agreement = agree / count
    return {
        "num_images": count,
        "max_abs_logit_diff": logit_diff,
        "max_abs_probability_diff": prob_diff,
        "top1_agreement": agreement,
        "min_top1_agreement": FP16_MIN_TOP1_AGREEMENT,
        "passed": agreement >= FP16_MIN_TOP1_AGREEMENT,
    }


def _save_weights(run_dir: Path, staging: Path, data: Path, split: str, batch_size: int) -> dict:
    """Write the model (fp16 safetensors, config saying float32, code files) and the processor,
    reload it the way users will, and compare its logits with the run's."""
    import torch

    from .data import load_eval_split
    from .models import label_names, load_model_folder

    model, processor = load_model_folder(run_dir)
    labels = label_names(model.config)
    crop = getattr(model.config, "train_crop_size", None)
    if crop and processor.crop_size is None:
        # A crop-trained run from before processors carried the crop: serve its training scale.
        processor.crop_size = {"height": crop, "width": crop}
        logger.info("Serving one %d px centre crop (the model's train_crop_size).", crop)
    model = model.float()  # the config's `dtype` follows the model: float32, what users run
    state, kept = _fp16_state_dict(model)
    model.save_pretrained(staging, state_dict=state, safe_serialization=True)
    processor.save_pretrained(staging)
    code_files(staging)  # every auto_map module is there (trust_remote_code loads)
    release_model, _ = load_model_folder(staging)
    if release_model.dtype != torch.float32:  # transformers' default dtype rule changed
        raise RuntimeError(
            f"{staging} loads as {release_model.dtype}, expected torch.float32; "
            "check config.json's `dtype`."
        )
    dataset, _ = load_eval_split(data, split, labels)
    if len(dataset) == 0:
        raise ValueError(f"The {split!r} split of {data} is empty; nothing to evaluate.")
    check = _compare_logits(model, release_model, processor, dataset, batch_size)
    weights = sorted(staging.glob("*.safetensors"))
    return {
        "files": [p.name for p in weights],
        "bytes": sum(p.stat().st_size for p in weights),
        "dtype": "float16",
        "kept_float32": kept,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "fp16_check": check,
    }


def _copy_bench(bench: list[Path], staging: Path) -> list[str]:
    """Copy bench JSON into the release as bench*.json (which load_release reads)."""
    names = []
    for path in bench:
        read_json(path, "a JSON document printed by bench/models.py or bench/inference.py")
        name = path.name if Path(path.name).match(BENCH_GLOB) else f"bench_{path.name}"
        if (staging / name).exists():
            raise ValueError(
                f"Two --bench files would both be stored as {name} ({path}); rename one."
            )
        shutil.copy2(path, staging / name)
        names.append(name)
    return names


# Parity images of a release: a 512-image sample measures a 99% agreement to +-0.44 points (one
# standard error), too coarse for a one-point gate; a release checks up to 4,096 validation
# faces (all of FER2013's 3,589 and AffectNet's 3,999), within the pixel budget below.
RELEASE_PARITY_IMAGES = 4096
RELEASE_PARITY_BYTES = 1 << 30


def release_parity_images(config: dict) -> int:
    """How many validation images the release's ONNX parity checks use (>= export's 512)."""
    side = int(config.get("image_size", 224))
    per_image = 4 * int(config.get("num_channels", 3)) * side * side
    return max(512, min(RELEASE_PARITY_IMAGES, RELEASE_PARITY_BYTES // per_image))


def _export_onnx(
    staging: Path, output: Path, data: Path, config: dict, quantize: str | None, measure_speed: bool
) -> dict:
    from .data import image_source
    from .export import export_model

    onnx_dir = staging / ONNX_SUBFOLDER
    report = export_model(
        staging,
        onnx_dir,
        quantize_mode=quantize,
        data=image_source(data),
        measure_speed=measure_speed,
        num_validation=release_parity_images(config),
        recorded_model_dir=output,  # the export reads the staging copy
    )
    # The quantizer's settings: not needed to load or run the model, and never published.
    (onnx_dir / ORT_CONFIG_FILE).unlink(missing_ok=True)
    return report


def _default_quantize(config: dict) -> str:
    """Static int8 for CNNs (QLinearConv is the fast path), dynamic for ViTs (MatMul-heavy)."""
    return "dynamic" if config.get("backbone_config", {}).get("model_type") == "vit" else "static"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_release(
    run_dir: str | Path,
    output: str | Path,
    data: str | Path,
    *,
    split: str = "validation",
    tta: str = "none",
    onnx: bool | None = None,
    quantize: str | None = None,
    bench_files: Sequence[str | Path] = (),
    repo_id: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
    batch_size: int = 64,
    measure_speed: bool = True,
) -> dict[str, Any]:
    """Turn a finished training run into a release folder at `output`.

    The folder holds the model (safetensors weights stored in float16, a config whose `dtype` is
    float32 so `from_pretrained`, `pipeline` and `fer-hf evaluate` run in float32, the `auto_map`
    code files, preprocessor_config.json), `metrics.json` + `confusion_matrix.png` from
    `evaluate_model` on `split` of `data` run on the release weights themselves, the run's
    `train_summary.json` (and the training data's `prepare_report.json` when there is one),
    the `bench_files` as bench*.json, `onnx/` (fp32 + int8 with parity.json) and the model card
    as README.md. It is built in a temporary sibling folder and moved into place at the end, so
    a failed build leaves `output` as it was.

    Args:
        run_dir: a `train.py` output_dir (model, processor, train_summary.json); never modified.
        output: the release folder; an existing non-empty one is replaced only with `overwrite`.
        data: a `fer-hf prepare` folder (or class-folder tree) to evaluate on and calibrate with.
        split / tta: evaluation split and test-time augmentation ("none" or "flip").
        onnx: export `onnx/`; None exports when the fp32 ONNX file would be under
            `ONNX_AUTO_MAX_BYTES` (about 4 bytes per parameter).
        quantize: "static" or "dynamic" int8; None picks static for CNNs, dynamic for ViTs.
        repo_id: the card's Hub id; defaults to `fer-hf/<output folder name>`.
        license: the weights' licence when the training data's is unknown to fer-hf.
        measure_speed: time the ONNX files (the card's speed rows come from it).
    Returns a report: weights (files, bytes, fp16 check), metrics, onnx (parity report or None
    with `onnx_skipped` saying why), size_bytes, and `passed` (fp16 and ONNX checks held).
    """
    from .export import QUANTIZE_MODES
    from .training.evaluation import TTA_MODES, evaluate_model

    run_dir, output, data = Path(run_dir), Path(output), Path(data)
    bench = [Path(p) for p in bench_files]
    if tta not in TTA_MODES:
        raise ValueError(f"Unknown tta {tta!r}; expected one of {TTA_MODES}.")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ValueError(f"Unknown quantize {quantize!r}; expected one of {QUANTIZE_MODES}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    repo_id = repo_id or f"fer-hf/{output.resolve().name}"
    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"--repo-id must look like 'owner/name', got {repo_id!r}.")
    _check_inputs(run_dir, output, data, overwrite, bench)
    summary = read_json(run_dir / SUMMARY_FILE, "train.py's training summary")
    dataset = summary.get("dataset") or {}
    if license is None and data_source(dataset.get("name")) is None:
        raise ValueError(
            f"The licence of {run_dir}'s training data {dataset.get('name')!r} is unknown to "
            "fer-hf, and weights inherit their data's terms; pass --license ID."
        )
    config = read_json(run_dir / "config.json", "a transformers config")

    output.parent.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=".fer-hf-release-", dir=output.parent))
    staging = workspace / output.name  # same folder name: the plot title and card name it
    staging.mkdir()
    try:
        report: dict[str, Any] = {"output": str(output), "repo_id": repo_id}
        report["weights"] = _save_weights(run_dir, staging, data, split, batch_size)

        metrics = evaluate_model(
            staging,
            data,
            staging,
            split=split,
            tta=tta,
            batch_size=batch_size,
            recorded_model=str(output.resolve()),  # where the release lives, not the staging copy
        )
        report["metrics"] = {
            k: metrics[k]
            for k in ("n", "split", "tta", "accuracy", "balanced_accuracy", "macro_f1")
        }

        shutil.copy2(run_dir / SUMMARY_FILE, staging / SUMMARY_FILE)
        prepare_report = Path(dataset.get("path") or "") / PREPARE_REPORT_FILE
        if dataset.get("path") and prepare_report.is_file():
            shutil.copy2(prepare_report, staging / PREPARE_REPORT_FILE)
        report["bench_files"] = _copy_bench(bench, staging)

        estimate = 4 * report["weights"]["num_parameters"]
        report["onnx"] = None
        if onnx is None and estimate >= ONNX_AUTO_MAX_BYTES:
            report["onnx_skipped"] = (
                f"fp32 ONNX would be about {estimate / 1e6:.1f} MB (>= "
                f"{ONNX_AUTO_MAX_BYTES / 1e6:.0f} MB); pass --onnx to export it anyway"
            )
        elif onnx is False:
            report["onnx_skipped"] = "--no-onnx"
        else:
            report["onnx"] = _export_onnx(
                staging, output, data, config, quantize or _default_quantize(config), measure_speed
            )

        onnx_dir = staging / ONNX_SUBFOLDER
        release = load_release(staging, onnx_dir=onnx_dir if onnx_dir.is_dir() else None)
        render_model_card(release, repo_id, license=license).save(staging / "README.md")

        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    report["size_bytes"] = _folder_bytes(output)
    report["passed"] = report["weights"]["fp16_check"]["passed"] and (
        report["onnx"] is None or bool(report["onnx"]["passed"])
    )
    return report


def format_release_report(report: dict[str, Any]) -> str:
    """A few human-readable lines summarising `build_release`'s report."""
    weights, check, m = report["weights"], report["weights"]["fp16_check"], report["metrics"]
    lines = [
        f"weights: {', '.join(weights['files'])} ({weights['bytes'] / 1e6:.2f} MB, float16 "
        f"stored, loads as float32; {weights['num_parameters']:,} parameters)",
        f"fp16 vs the run's fp32 on {check['num_images']} images: max |logit diff| "
        f"{check['max_abs_logit_diff']:.2e}, top-1 agreement {check['top1_agreement']:.2%} "
        f"(>= {check['min_top1_agreement']:.0%}) {'ok' if check['passed'] else 'FAILED'}",
        f"{m['split']} (n={m['n']}, tta {m['tta']}): accuracy {m['accuracy']:.4f}, balanced "
        f"accuracy {m['balanced_accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}",
    ]
    if report["onnx"] is not None:
        from .export import format_report

        lines.append(format_report(report["onnx"]))
    else:
        lines.append(f"onnx/: skipped ({report['onnx_skipped']})")
    lines.append(f"release size {report['size_bytes'] / 1e6:.2f} MB; card for {report['repo_id']}")
    return "\n".join(lines)
