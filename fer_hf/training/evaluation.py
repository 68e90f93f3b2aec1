"""`fer-hf evaluate`: a trained model on a prepared split or a class-folder tree -> metrics + plot.

Writes `OUT/metrics.json` (keys below) and `OUT/confusion_matrix.png`. Imports fer_hf.data,
models, metrics and labels; never export, hub or cli.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..artifacts import CONFUSION_PNG, METRICS_FILE, write_json
from ..data import load_eval_split
from ..metrics import expression_report, valence_arousal_report
from ..models import label_names as model_labels
from ..models import load_model_folder
from .transforms import FerTransform, collate

logger = logging.getLogger(__name__)

TTA_MODES: tuple[str, ...] = ("none", "flip", "tencrop")
# Ten-crop TTA: crops of this fraction of the input side (40 px of a 48 px face, the size of the
# FER2013 literature's crops).
TENCROP_FRACTION = 5 / 6


def tta_views(
    pixel_values: torch.Tensor, tta: str, crop_size: int | None = None
) -> list[torch.Tensor]:
    """The views of a preprocessed batch that `tta` averages over.

    "none": the batch. "flip": the batch and its mirror. "tencrop": the four corner crops and the
    centre crop and their mirrors. For a model trained on fixed-size random crops
    (`crop_size`, its config's `train_crop_size`) the crops have that side and are fed unscaled,
    as the literature's crop-trained nets are tested. Otherwise they are `TENCROP_FRACTION` of
    the side (40 px of 48), each resized back to the input size (bilinear): a 1.2x zoom, within
    what random resized crops show in training (fed unscaled, such crops cost the factorized
    release of session 4, trained on resized crops, 8 points of accuracy).
    """
    if tta == "none":
        return [pixel_values]
    if tta == "flip":
        return [pixel_values, pixel_values.flip(-1)]
    height, width = pixel_values.shape[-2:]
    if crop_size is not None and crop_size < min(height, width):
        crop_h = crop_w = crop_size
    else:
        crop_size = None
        crop_h, crop_w = round(height * TENCROP_FRACTION), round(width * TENCROP_FRACTION)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w)]
    views = []
    for y, x in [*corners, (top, left)]:
        crop = pixel_values[..., y : y + crop_h, x : x + crop_w]
        if crop_size is None:
            crop = torch.nn.functional.interpolate(
                crop, size=(height, width), mode="bilinear", align_corners=False
            )
        views += [crop, crop.flip(-1)]
    return views


def predict(model, processor, dataset, batch_size: int = 64, tta: str = "none", device=None):
    """(probabilities (N, K), valence/arousal (N, 2) or None, labels, valence, arousal) arrays.

    `tta` ("none", "flip", "tencrop"; see `tta_views`) averages the softmax (and
    valence/arousal) over the views of each image.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device)
    crop_size = getattr(model.config, "train_crop_size", None)
    if tta == "tencrop" and getattr(processor, "crop_size", None) is not None:
        processor = copy.copy(processor)  # ten crops of the whole face, not of its centre crop
        processor.crop_size = None
    loader = torch.utils.data.DataLoader(
        dataset.with_transform(FerTransform(processor)), batch_size=batch_size, collate_fn=collate
    )
    probabilities, affect, labels, valence, arousal = [], [], [], [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="Evaluating", unit="batch"):
            views = tta_views(batch["pixel_values"].to(device), tta, crop_size)
            outputs = [model(pixel_values=view) for view in views]
            probabilities.append(
                torch.stack([o.logits.float().softmax(-1) for o in outputs]).mean(0).cpu()
            )
            if outputs[0].valence_arousal is not None:
                affect.append(
                    torch.stack([o.valence_arousal.float() for o in outputs]).mean(0).cpu()
                )
            labels.append(batch["labels"])
            valence.append(batch["valence"])
            arousal.append(batch["arousal"])
    cat = lambda parts: torch.cat(parts).numpy()  # noqa: E731
    return (
        cat(probabilities),
        cat(affect) if affect else None,
        cat(labels),
        cat(valence),
        cat(arousal),
    )


def plot_confusion_matrix(matrix, labels, path: str | Path, title: str | None = None) -> Path:
    """Row-normalised confusion matrix (rows true, columns predicted) as a labelled PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(5.0, 0.7 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(
        range(len(labels)),
        [f"{name} ({int(n)})" for name, n in zip(labels, totals[:, 0], strict=True)],
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (count)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = normalised[i, j]
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > 0.5 else "black",
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def per_model_tta(tta: str | Sequence[str], num_models: int) -> list[str]:
    """`tta` as one mode per model: a single mode (or a one-item list) applies to every model.

    Raises `ValueError` naming an unknown mode, or a list whose length is not `num_models`.
    """
    modes = [tta] if isinstance(tta, str) else list(tta)
    for mode in modes:
        if mode not in TTA_MODES:
            raise ValueError(f"Unknown --tta {mode!r}; expected one of: {', '.join(TTA_MODES)}.")
    if len(modes) == 1:
        return modes * num_models
    if len(modes) != num_models:
        raise ValueError(
            f"--tta lists {len(modes)} modes ({','.join(modes)}) for {num_models} models; give "
            "one mode for all of them or one per model, in the models' order."
        )
    return modes


def evaluate_model(
    model_dir: str | Path | list[str | Path],
    data: str | Path,
    output: str | Path,
    split: str = "test",
    tta: str | Sequence[str] = "none",
    batch_size: int = 64,
    device: str | None = None,
    recorded_model: str | None = None,
) -> dict:
    """Evaluate a model folder on `split` of `data`; write `metrics.json` and the plot to `output`.

    `model_dir` may be a list of folders: an ensemble that averages the models' probabilities
    (and valence/arousal, over the models that predict them), each model preprocessing the
    images with its own processor (and `tta`). All must predict the same labels. `tta` is one
    mode for every model, or one per model (an ensemble of a crop-trained CNN, best with
    "tencrop", and a ViT, best with "flip").

    `metrics.json` holds `n`, `accuracy`, `balanced_accuracy`, `macro_f1`, `per_class_recall`
    ({label: recall or null}), `confusion_matrix` ({"labels", "matrix"}: rows true, columns
    predicted), `valence_*`/`arousal_*` (rmse, ccc, pcc, sagr, n) when the model and data have
    them, the run's `model` (a path, a list of paths for an ensemble, or `recorded_model` when
    given: where a release built in a staging folder will live), `ensemble` (number of models),
    `data`, `split`, `tta` (a mode, or the list of per-model modes when they differ),
    `runtime_s`, and `num_skipped` / `skipped` (`[{"file", "reason"}]`: unreadable files of a
    class-folder tree). Returns that dict.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive int, got {batch_size!r}.")
    output = Path(output).expanduser()
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is a file; pass a folder.")
    model_dirs = list(model_dir) if isinstance(model_dir, list | tuple) else [model_dir]
    if not model_dirs:
        raise ValueError("Pass at least one model folder.")
    modes = per_model_tta(tta, len(model_dirs))
    loaded = []
    for folder in model_dirs:
        model, processor = load_model_folder(folder)
        loaded.append((model, processor, model_labels(model.config)))
    label_names = loaded[0][2]
    for folder, (_, _, names) in zip(model_dirs[1:], loaded[1:], strict=True):
        if names != label_names:
            raise ValueError(
                f"An ensemble needs models of one label schema: {model_dirs[0]} predicts "
                f"{label_names} but {folder} predicts {names}."
            )
    dataset, described = load_eval_split(data, split, label_names)
    if len(dataset) == 0:
        raise ValueError(f"The {split!r} split of {data} is empty; nothing to evaluate.")

    started = time.perf_counter()
    runs = [
        predict(model, processor, dataset, batch_size=batch_size, tta=mode, device=device)
        for (model, processor, _), mode in zip(loaded, modes, strict=True)
    ]
    probabilities = np.mean([run[0] for run in runs], axis=0)
    affects = [run[1] for run in runs if run[1] is not None]
    affect = np.mean(affects, axis=0) if affects else None
    _, _, labels, valence, arousal = runs[0]
    metrics = expression_report(probabilities.argmax(-1), labels, label_names)
    if affect is not None:
        metrics.update(valence_arousal_report(affect, valence, arousal))
    metrics.update(
        model=(
            recorded_model
            if recorded_model is not None
            else str(Path(model_dirs[0]).resolve())
            if len(model_dirs) == 1
            else [str(Path(folder).resolve()) for folder in model_dirs]
        ),
        ensemble=len(model_dirs),
        data=str(Path(data).resolve()),
        data_kind=described["kind"],
        split=described["split"],
        tta=modes[0] if len(set(modes)) == 1 else modes,
        runtime_s=round(time.perf_counter() - started, 3),
        # Files of a class-folder tree that could not be read (a prepared folder's skipped
        # records are in its prepare_report.json).
        num_skipped=len(described.get("skipped", [])),
        skipped=described.get("skipped", []),
    )
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / METRICS_FILE, metrics)
    name = " + ".join(Path(folder).name for folder in model_dirs)
    title = (
        f"{name} on {described['split'] or Path(data).name} (n={metrics['n']}): "
        f"acc {metrics['accuracy']:.3f}, bal. acc {metrics['balanced_accuracy']:.3f}"
    )
    plot_confusion_matrix(
        metrics["confusion_matrix"]["matrix"], label_names, output / CONFUSION_PNG, title
    )
    return metrics


def format_metrics_table(metrics: dict) -> str:
    """`metrics.json` as a text table: the headline numbers, then recall per class."""
    rows = [("n", str(metrics["n"]))]
    rows += [(key, f"{metrics[key]:.4f}") for key in ("accuracy", "balanced_accuracy", "macro_f1")]
    for name in ("valence", "arousal"):
        for key in ("rmse", "ccc", "pcc", "sagr"):
            value = metrics.get(f"{name}_{key}")
            if value is not None:
                rows.append((f"{name}_{key}", f"{value:.4f}"))
    rows += [
        (f"recall {label}", "-" if value is None else f"{value:.4f}")
        for label, value in metrics["per_class_recall"].items()
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value:>8}" for key, value in rows)
