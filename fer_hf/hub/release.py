"""Read and check a release folder: the model plus the files its card is rendered from.

Only JSON, safetensors headers and `fer_hf.labels`; never imports torch, the models or the cli.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..artifacts import (
    BENCH_GLOB,
    CONFUSION_PNG,
    DATASET_METADATA_FILE,
    METRICS_FILE,
    PARITY_FILE,
    PREPARE_REPORT_FILE,
    SUMMARY_FILE,
    read_json,
)

logger = logging.getLogger(__name__)

REQUIRED_METRICS = ("n", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall")
VA_TARGETS = ("valence", "arousal")


@dataclass
class Release:
    """Everything a model card and a Hub repository are built from, read from one release folder.

    `metrics`, `summary`, `parity` and the bench entries are None/empty when their file is absent;
    the card then leaves their section out instead of printing a placeholder.
    """

    model_dir: Path
    config: dict[str, Any]
    labels: list[str]
    weight_files: list[Path]
    num_parameters: int
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    confusion_png: Path | None = None
    onnx_dir: Path | None = None
    onnx_files: list[Path] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    prepare_report: dict[str, Any] | None = None
    model_bench: dict[str, Any] | None = None
    inference_bench: dict[str, Any] | None = None

    @property
    def model_kind(self) -> str:
        if self.summary and self.summary.get("model_kind"):
            return str(self.summary["model_kind"])
        return str(self.config.get("backbone_config", {}).get("model_type", "unknown"))

    @property
    def dataset(self) -> dict[str, Any]:
        return dict((self.summary or {}).get("dataset") or {})

    @property
    def eval_dataset(self) -> tuple[str | None, bool]:
        """(name of the data metrics.json was measured on, whether it is the training data).

        `fer-hf evaluate` records the data folder; when it is the training folder the name is
        the training dataset's, otherwise the `source` in its fer_hf_dataset.json (when that
        folder is on this machine) or the folder's name.
        """
        train_name, train_path = self.dataset.get("name"), self.dataset.get("path")
        data = (self.metrics or {}).get("data")
        if not data or not train_path or _same_path(data, train_path):
            return train_name, True
        meta = Path(data) / DATASET_METADATA_FILE
        if meta.is_file():
            source = read_json(meta, "fer-hf prepared-dataset metadata").get("source")
            if source:
                return str(source), False
        return Path(data).name, False

    @property
    def va_metrics(self) -> dict[str, dict[str, float]]:
        """{"valence": {"rmse": v, "ccc": v, ...}, "arousal": {...}} from metrics.json, if any."""
        found: dict[str, dict[str, float]] = {}
        for key, value in (self.metrics or {}).items():
            target, _, name = key.partition("_")
            if target in VA_TARGETS and name and isinstance(value, int | float):
                found.setdefault(target, {})[name] = float(value)
        return found


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _labels_from_config(config: dict[str, Any], path: Path) -> list[str]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError(f"{path} has no `id2label`; expected a fer-hf model folder's config.json.")
    return [id2label[k] for k in sorted(id2label, key=int)]


# Saved buffers that are not parameters, as model.num_parameters() sees it: batch-norm statistics
# and the factorized model's activation-clip bounds (`ActivationClamp.low/high`).
_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked", ".low", ".high")


def count_parameters(weight_files: list[Path]) -> int:
    """Number of parameters stored in safetensors files, read from their headers (no tensors).

    Buffers (batch-norm statistics, clip bounds) are stored beside the weights but are not
    parameters; they are skipped so
    the count equals `model.num_parameters()` and matches bench/models.py entries.
    """
    total = 0
    for path in weight_files:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                if name.endswith(_BUFFER_SUFFIXES):
                    continue
                n = 1
                for dim in f.get_slice(name).get_shape():
                    n *= dim
                total += n
    return total


def _check_metrics(metrics: dict[str, Any], labels: list[str], path: Path) -> None:
    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; expected the output of `fer-hf evaluate` "
            f"(keys {list(REQUIRED_METRICS)})."
        )
    unknown = sorted(set(metrics["per_class_recall"]) - set(labels))
    if unknown:
        raise ValueError(
            f"{path} reports recall for {unknown}, which the model's labels {labels} lack; "
            "metrics.json must come from evaluating this model."
        )
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and list(matrix.get("labels", [])) != labels:
        raise ValueError(
            f"{path}: confusion_matrix labels {matrix.get('labels')} differ from the model's "
            f"labels {labels}; re-run `fer-hf evaluate` on this model."
        )


def _select_model_bench(doc: dict[str, Any], kind: str, n_params: int, path: Path) -> dict | None:
    """The `bench/models.py` entry for this model: same kind and the same parameter count."""
    entry = doc.get("models", {}).get(kind)
    if entry is None:
        logger.warning("%s has no entry for model kind %r; speed figures left out.", path, kind)
        return None
    if entry.get("params") != n_params:
        logger.warning(
            "%s measured a %r model with %s parameters, this release has %d; "
            "its figures describe another configuration and are left out.",
            path,
            kind,
            entry.get("params"),
            n_params,
        )
        return None
    return {
        **entry,
        "image_size": doc.get("image_size"),
        "threads": doc.get("threads"),
        "machine": doc.get("machine"),
    }


def load_release(
    model_dir: str | Path,
    *,
    onnx_dir: str | Path | None = None,
    bench_files: tuple[str | Path, ...] | list[str | Path] = (),
) -> Release:
    """Read a model folder and the run files beside it (metrics.json, train_summary.json,
    confusion_matrix.png, prepare_report.json, bench*.json).

    Args:
        model_dir: a saved fer-hf model folder (config.json with `auto_map`, safetensors weights,
            preprocessor_config.json), optionally holding metrics.json, confusion_matrix.png and
            train_summary.json.
        onnx_dir: a `fer-hf export` folder for this model (model.onnx, model_quantized.onnx,
            parity.json), or None.
        bench_files: JSON documents printed by `bench/models.py` / `bench/inference.py`;
            `bench*.json` files inside `model_dir` are read too.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{model_dir} has no config.json; pass a model folder written by `fer-hf init`, "
            "`train.py` or `save_pretrained`."
        )
    config = read_json(config_path, "a transformers config")
    labels = _labels_from_config(config, config_path)
    weight_files = sorted(model_dir.glob("*.safetensors"))
    if not weight_files:
        pickled = sorted(p.name for p in model_dir.glob("*.bin"))
        hint = f" (found {pickled}: re-save with `safe_serialization=True`)" if pickled else ""
        raise FileNotFoundError(f"{model_dir} has no *.safetensors weights{hint}.")
    release = Release(
        model_dir=model_dir,
        config=config,
        labels=labels,
        weight_files=weight_files,
        num_parameters=count_parameters(weight_files),
    )
    if (model_dir / METRICS_FILE).is_file():
        release.metrics = read_json(model_dir / METRICS_FILE, "`fer-hf evaluate` metrics")
        _check_metrics(release.metrics, labels, model_dir / METRICS_FILE)
    if (model_dir / SUMMARY_FILE).is_file():
        release.summary = read_json(model_dir / SUMMARY_FILE, "train.py's training summary")
    if (model_dir / CONFUSION_PNG).is_file():
        release.confusion_png = model_dir / CONFUSION_PNG
    if (model_dir / PREPARE_REPORT_FILE).is_file():
        release.prepare_report = read_json(model_dir / PREPARE_REPORT_FILE, "a prepare report")
    if onnx_dir is not None:
        _attach_onnx(release, Path(onnx_dir))
    # Bench documents kept in the release folder count as given.
    for path in [*bench_files, *sorted(model_dir.glob(BENCH_GLOB))]:
        _attach_bench(release, Path(path))
    return release


def _attach_onnx(release: Release, onnx_dir: Path) -> None:
    if not onnx_dir.is_dir():
        raise FileNotFoundError(f"ONNX folder {onnx_dir} does not exist; run `fer-hf export`.")
    files = sorted(onnx_dir.glob("*.onnx")) + sorted(onnx_dir.glob("*.onnx_data"))
    if not any(p.suffix == ".onnx" for p in files):
        raise FileNotFoundError(f"{onnx_dir} holds no *.onnx file; run `fer-hf export` into it.")
    onnx_config = onnx_dir / "config.json"
    if onnx_config.is_file():
        exported = _labels_from_config(read_json(onnx_config, "a config"), onnx_config)
        if exported != release.labels:
            raise ValueError(
                f"{onnx_dir} was exported from a model with labels {exported}, but "
                f"{release.model_dir} has {release.labels}; export this model instead."
            )
    release.onnx_dir = onnx_dir
    release.onnx_files = files
    if (onnx_dir / PARITY_FILE).is_file():
        release.parity = read_json(onnx_dir / PARITY_FILE, "`fer-hf export`'s parity report")


def _attach_bench(release: Release, path: Path) -> None:
    """Keep the entries of a bench document that measured this model (same kind and size)."""
    if not path.is_file():
        raise FileNotFoundError(f"bench file {path} does not exist.")
    doc = read_json(path, "a JSON document printed by bench/models.py or bench/inference.py")
    models = doc.get("models")
    kind, n_params = release.model_kind, release.num_parameters
    if isinstance(models, dict) and all(
        isinstance(v, dict) and "mflops" in v for v in models.values()
    ):
        release.model_bench = _select_model_bench(doc, kind, n_params, path)
    elif isinstance(models, list) and all(isinstance(r, dict) and "backend" in r for r in models):
        # `bench/inference.py --models` labels rows by folder and adds `model_kind`.
        rows = [
            r
            for r in models
            if r.get("model_kind", r.get("kind")) == kind and r.get("params") == n_params
        ]
        if not rows:
            logger.warning(
                "%s has no %r rows with this release's %d parameters; its latency figures "
                "describe other models and are left out.",
                path,
                kind,
                n_params,
            )
            return
        labels = {r.get("kind") for r in rows}
        end_to_end = [r for r in doc.get("end_to_end") or [] if r.get("kind") in labels]
        release.inference_bench = {
            "rows": rows,
            "end_to_end": end_to_end,
            "machine": doc.get("machine"),
        }
    else:
        raise ValueError(
            f"{path} is neither a bench/models.py document (`models`: name -> {{params, mflops, "
            "...}) nor a bench/inference.py one (`models`: [{kind, backend, ...}])."
        )
