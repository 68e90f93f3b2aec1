"""The files fer-hf writes and reads back, declared once: names, JSON reading/writing, machine info.

Ground floor beside `labels.py`: imports only the standard library and numpy, never another
fer_hf module, torch or transformers. Every layer and bench script takes the names from here.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# `fer-hf prepare` (fer_hf/data/prepare.py) beside the saved DatasetDict.
DATASET_METADATA_FILE = "fer_hf_dataset.json"  # {"format": PREPARED_FORMAT, "version": ...}
PREPARED_FORMAT = "fer-hf-prepared"
PREPARED_VERSION = 1
PREPARE_REPORT_FILE = "prepare_report.json"
# `train.py` in its output_dir.
SUMMARY_FILE = "train_summary.json"
# Its keys that describe one run (where and how it ran, its results), not the data and recipe of
# its weights: `fer-hf average` drops them from the summary it carries over. A test checks that
# these are exactly the keys a finished run's summary adds to, or drops from, its start summary.
SUMMARY_RUN_KEYS = (
    "output_dir", "command", "in_progress", "resumed_from", "global_step", "train_runtime_s",
    "train_samples_per_s", "train_loss", "best_metric", "best_model_checkpoint", "eval_metrics",
    "test_metrics",
)  # fmt: skip
# `fer-hf evaluate` in its output folder.
METRICS_FILE = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
# `fer-hf export` in its output folder (a release's onnx/ subfolder).
ONNX_SUBFOLDER = "onnx"
ONNX_FILE_NAME = "model.onnx"
QUANTIZED_FILE_NAME = "model_quantized.onnx"
ORT_CONFIG_FILE = "ort_config.json"  # the quantizer's settings; never published
PARITY_FILE = "parity.json"
# The ONNX file each inference backend runs.
ONNX_FILE_NAMES = {"onnx": ONNX_FILE_NAME, "onnx-int8": QUANTIZED_FILE_NAME}
# bench/*.py output stored in a release folder (the card's speed rows).
BENCH_GLOB = "bench*.json"


def is_trainer_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether `folder` is named like a `Trainer` checkpoint inside a run (`checkpoint-<step>`)."""
    return re.fullmatch(r"checkpoint-\d+", Path(folder).name) is not None


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths are the same or one lies inside the other (after resolving links):
    an output folder that overlaps an input would modify or replace it."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Load a JSON object, with errors that name the file and what it should be."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); expected {what}.") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}; expected {what} (a JSON object).")
    return data


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):  # np.float32, np.int64, np.bool_
        return _clean(value.item())
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    """JSON with NaN/inf written as null (strict JSON readers reject NaN), numpy scalars as
    Python numbers, indented, with a final newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_clean(data), f, indent=2, allow_nan=False)
        f.write("\n")


def _cpu_name() -> str:
    return platform.processor() or platform.machine()


def machine_info(cpu: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Where a figure was measured: platform, Python, logical cores, date, versions.

    `cpu` is `fer_hf.training.precision.cpu_summary()` (the one reader of /proc/cpuinfo: model
    name, SIMD level, bf16, torch threads) where the caller has torch; without it `cpu` is what
    `platform` reports. `extra` entries (versions, thread counts, the device) are added last.
    """
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    info.update(cpu or {})
    info.update(extra)
    return info


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of `names` (None when missing), read without importing them."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


__all__ = [
    "BENCH_GLOB",
    "CONFUSION_PNG",
    "DATASET_METADATA_FILE",
    "METRICS_FILE",
    "ONNX_FILE_NAME",
    "ONNX_FILE_NAMES",
    "ONNX_SUBFOLDER",
    "ORT_CONFIG_FILE",
    "PARITY_FILE",
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "PREPARE_REPORT_FILE",
    "QUANTIZED_FILE_NAME",
    "SUMMARY_FILE",
    "is_trainer_checkpoint",
    "machine_info",
    "overlaps",
    "package_versions",
    "read_json",
    "write_json",
]
