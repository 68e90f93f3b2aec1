"""Expression and valence/arousal metrics: local `evaluate` modules plus the Trainer's hook.

The modules are files in this folder loaded by path, so the Hub is never needed.
Must not import fer_hf.training, export, hub, inference or cli.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent
METRIC_MODULES: tuple[str, ...] = ("expression_classification", "valence_arousal")


def load_metric(name: str):
    """`evaluate.load` one of our local metric modules (`METRIC_MODULES`) by path, offline."""
    import evaluate

    if name not in METRIC_MODULES:
        raise ValueError(f"Unknown metric {name!r}; expected one of: {', '.join(METRIC_MODULES)}.")
    # In memory: no Arrow cache file, so parallel processes (DDP ranks) never share one.
    return evaluate.load(str(METRICS_DIR / f"{name}.py"), keep_in_memory=True)


def expression_report(
    predictions: Sequence[int] | np.ndarray,
    references: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    metric=None,
) -> dict:
    """Classification metrics as written to `metrics.json`.

    Returns `{"n", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall": {label:
    value or None when the class has no example}, "confusion_matrix": {"labels", "matrix"}}`
    (matrix rows = true class, columns = predicted class).
    """
    metric = metric or load_metric("expression_classification")
    result = metric.compute(
        predictions=np.asarray(predictions),
        references=np.asarray(references),
        num_labels=len(label_names),
    )
    recall = {
        name: (None if math.isnan(value) else value)
        for name, value in zip(label_names, result["per_class_recall"], strict=True)
    }
    return {
        "n": int(len(references)),
        "accuracy": result["accuracy"],
        "balanced_accuracy": result["balanced_accuracy"],
        "macro_f1": result["macro_f1"],
        "per_class_recall": recall,
        "confusion_matrix": {"labels": list(label_names), "matrix": result["confusion_matrix"]},
    }


def valence_arousal_report(
    predictions: np.ndarray, valence: np.ndarray, arousal: np.ndarray, metric=None
) -> dict[str, float]:
    """`valence_{rmse,ccc,pcc,sagr,n}` and `arousal_{...}` for the dimensions with at least one
    known reference ({} when none is known). `predictions` is `(N, 2)` = (valence, arousal);
    NaN references (unknown) are skipped by the metric module.
    """
    predictions = np.asarray(predictions, np.float64)
    out: dict[str, float] = {}
    for column, (name, reference) in enumerate((("valence", valence), ("arousal", arousal))):
        reference = np.asarray(reference, np.float64)
        if np.isnan(reference).all():
            continue
        metric = metric or load_metric("valence_arousal")
        result = metric.compute(predictions=predictions[:, column], references=reference)
        out.update({f"{name}_{key}": result[key] for key in ("rmse", "ccc", "pcc", "sagr", "n")})
    return out


def build_compute_metrics(label_names: Sequence[str]) -> Callable[..., dict[str, float]]:
    """The `Trainer(compute_metrics=...)` hook: flat float metrics for logs and the best model.

    Expects the Trainer to run with `label_names=["labels", "valence", "arousal"]`; predictions are
    the logits, or `(logits, valence_arousal)` for a model with the valence/arousal head. Keys:
    `accuracy`, `balanced_accuracy`, `macro_f1`, `recall_<label>` and, when there are
    valence/arousal predictions and references, the keys of `valence_arousal_report`.
    """
    label_names = list(label_names)
    classification = load_metric("expression_classification")
    regression = load_metric("valence_arousal")

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions, label_ids = eval_prediction.predictions, eval_prediction.label_ids
        logits, valence_arousal = (
            (predictions[0], predictions[1])
            if isinstance(predictions, tuple | list)
            else (predictions, None)
        )
        labels, valence, arousal = (
            label_ids if isinstance(label_ids, tuple | list) else (label_ids, None, None)
        )
        report = expression_report(logits.argmax(-1), labels, label_names, classification)
        metrics = {key: report[key] for key in ("accuracy", "balanced_accuracy", "macro_f1")}
        for name, value in report["per_class_recall"].items():
            metrics[f"recall_{name}"] = float("nan") if value is None else value
        if valence_arousal is not None and valence is not None:
            metrics.update(valence_arousal_report(valence_arousal, valence, arousal, regression))
        return metrics

    return compute_metrics


__all__ = [
    "METRICS_DIR",
    "METRIC_MODULES",
    "build_compute_metrics",
    "expression_report",
    "load_metric",
    "valence_arousal_report",
]
