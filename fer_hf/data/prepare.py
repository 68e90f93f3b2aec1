"""Raw source -> `DatasetDict` in the fer-hf schema: splits, resampling, report, plots, loading.

`prepare` writes a prepared folder (docs/DESIGN.md, "Prepared datasets"); `load_source` builds the
same splits without writing; `load_prepared` reads a folder back. Imports only `fer_hf.labels` and
`fer_hf.data` siblings.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np

from .. import __version__, labels
from ..artifacts import (
    DATASET_METADATA_FILE,
    PREPARE_REPORT_FILE,
    PREPARED_FORMAT,
    PREPARED_VERSION,
    write_json,
)
from . import affectnet, fer2013
from .folders import scan_class_tree
from .plots import plot_class_distribution, plot_valence_arousal
from .records import Options, build_records, prepared_features, temporary_cache_dir
from .splits import RESAMPLE_STRATEGIES, class_counts, resample_indices, stratified_split

SPLITS: tuple[str, ...] = ("train", "validation", "test")
BUILD_DIR = ".fer_hf_build"


def _scan_folder(data_dir: Path, num_classes: int | None):
    names = labels.class_names(num_classes) if num_classes is not None else None
    return scan_class_tree(data_dir, names, layout="class-folders")


SCANNERS = {"affectnet": affectnet.scan, "fer2013": fer2013.scan, "folder": _scan_folder}


def _check_int(name: str, value, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")


@dataclass(frozen=True)
class _Settings:
    """`prepare`'s knobs, checked once at the boundary."""

    source: str
    num_classes: int | None = None
    resample: str = "none"
    target_count: int | None = None
    val_fraction: float = 0.1
    seed: int = 42
    num_proc: int = 1
    image_size: int | None = None
    margin: float = 0.0

    def __post_init__(self):
        if self.source not in SCANNERS:
            raise ValueError(
                f"Unknown dataset {self.source!r}; expected one of: {', '.join(SCANNERS)}."
            )
        if self.num_classes is not None and self.num_classes not in labels.SUPPORTED_NUM_CLASSES:
            raise ValueError(
                f"`num_classes` must be one of {labels.SUPPORTED_NUM_CLASSES} or None, got "
                f"{self.num_classes!r}."
            )
        if self.resample not in RESAMPLE_STRATEGIES:
            raise ValueError(
                f"Unknown resampling {self.resample!r}; expected one of: "
                f"{', '.join(RESAMPLE_STRATEGIES)}."
            )
        _check_int("target_count", self.target_count, 1, optional=True)
        if self.target_count is not None and self.resample not in ("oversample", "undersample"):
            raise ValueError(
                f"`target_count` ({self.target_count}) needs resample 'oversample' or "
                f"'undersample', got {self.resample!r}; drop it or change the strategy."
            )
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"`val_fraction` must be a float, got {type(fraction).__name__}.")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in (0, 1), got {fraction!r}.")
        _check_int("seed", self.seed, 0)
        _check_int("num_proc", self.num_proc, 1)
        _check_int("image_size", self.image_size, 1, optional=True)
        if isinstance(self.margin, bool) or not isinstance(self.margin, int | float):
            raise TypeError(f"`margin` must be a float, got {type(self.margin).__name__}.")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"`margin` must be a finite number >= 0, got {self.margin!r}.")


def _data_root(data_dir: str | os.PathLike) -> Path:
    root = Path(data_dir).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"Data folder {data_dir} does not exist; pass the raw dataset's.")
    return root


def build_dataset(
    source: str,
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    resample: str = "none",
    target_count: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 42,
    num_proc: int = 1,
    image_size: int | None = None,
    margin: float = 0.0,
    cache_dir: str | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Build the prepared splits of a raw source without writing them; returns (splits, report).

    Arguments are `prepare`'s. Arrow files go to `cache_dir` (reused when the settings and the
    inputs' names, sizes and mtimes match), or to a temporary folder removed at exit when None.
    """
    settings = _Settings(
        source,
        num_classes,
        resample,
        target_count,
        val_fraction,
        seed,
        num_proc,
        image_size,
        margin,
    )
    root = _data_root(data_dir)
    splits, report, _ = _build(settings, root, cache_dir or temporary_cache_dir())
    return splits, report


def _build(
    settings: _Settings, root: Path, cache_dir: str
) -> tuple[datasets.DatasetDict, dict, dict[str, np.ndarray]]:
    """`build_dataset` on checked settings; also returns the label/VA columns for the plots."""
    started = time.perf_counter()
    scan, names = SCANNERS[settings.source](root, settings.num_classes)
    options = Options(str(root), names, settings.image_size, settings.margin)
    records, skipped, excluded, columns = build_records(scan, options, settings.num_proc, cache_dir)
    decode_s = time.perf_counter() - started
    if len(records) == 0:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(
            f"No usable records in {root} ({scan.layout}): {len(skipped)} skipped, "
            f"{sum(excluded.values())} excluded {excluded or ''}. First problems: {reasons or '-'}."
        )
    indices = {split: np.flatnonzero(columns["split"] == split) for split in SPLITS}
    if indices["train"].size == 0:
        raise ValueError(
            f"{root} gave no usable training records ({scan.layout}); a train split is required."
        )
    label = columns["label"]
    carved = indices["validation"].size == 0
    if carved:
        kept, taken = stratified_split(
            label[indices["train"]], settings.val_fraction, settings.seed
        )
        indices["validation"] = indices["train"][taken]
        indices["train"] = indices["train"][kept]
        if indices["validation"].size == 0:
            raise ValueError(
                f"Too few training records ({indices['train'].size}) to carve a validation split "
                f"with val_fraction={settings.val_fraction}; add data or raise --val-fraction."
            )
    present = [split for split in SPLITS if indices[split].size]
    before = {s: class_counts(label[indices[s]], len(names)) for s in present}
    order = resample_indices(
        label[indices["train"]], settings.resample, settings.seed, settings.target_count
    )
    indices["train"] = indices["train"][order]
    after = {s: class_counts(label[indices[s]], len(names)) for s in present}
    splits = datasets.DatasetDict({s: records.select(indices[s]) for s in present})
    origin = {s: "source" for s in present}
    if carved:
        origin["validation"] = (
            f"carved from train (stratified, fraction {settings.val_fraction}, "
            f"seed {settings.seed})"
        )
    known_va = np.isfinite(columns["valence"]) & np.isfinite(columns["arousal"])
    report = {
        **asdict(settings),
        "data_dir": str(root),
        "layout": scan.layout,
        "num_classes": len(names),
        "class_names": list(names),
        "splits": present,
        "split_origin": origin,
        "num_records": {s: int(indices[s].size) for s in present},
        "class_counts_before": {s: dict(zip(names, before[s], strict=True)) for s in present},
        "class_counts_after": {s: dict(zip(names, after[s], strict=True)) for s in present},
        "num_with_valence_arousal": int(known_va.sum()),
        "num_excluded": sum(excluded.values()),
        "excluded": excluded,
        "num_skipped": len(skipped),
        "skipped": skipped,
        "rows": "`file.csv:row N` counts lines from 1; a header line is row 1",
        "num_decoded": len(scan.items),
        "decode_s": round(decode_s, 3),
        "images_per_s": round(len(scan.items) / decode_s, 1) if decode_s > 0 else None,
        "versions": {"fer_hf": __version__, "datasets": datasets.__version__},
    }
    return splits, report, columns


def load_source(
    source: str, data_dir: str | os.PathLike, num_classes: int | None = None, **kwargs
) -> datasets.DatasetDict:
    """Prepared splits of a raw source, built on the fly (no output folder); see `build_dataset`."""
    return build_dataset(source, data_dir, num_classes=num_classes, **kwargs)[0]


def _check_output(output: str | os.PathLike, data_dir: Path) -> Path:
    out = Path(output).expanduser().resolve()
    if out == data_dir or data_dir in out.parents or out in data_dir.parents:
        raise ValueError(
            f"Output {output} overlaps the data folder {data_dir}; the input is never written "
            "to. Choose an output folder outside it."
        )
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"Output {output} exists and is a file; pass a folder path.")
        entries = {p.name for p in out.iterdir()} - {BUILD_DIR}
        if entries and DATASET_METADATA_FILE not in entries:
            raise ValueError(
                f"Output {output} is a non-empty folder that is not a fer-hf prepared dataset "
                f"(no {DATASET_METADATA_FILE}); refusing to overwrite it. Pass an empty or new "
                "folder."
            )
    return out


def prepare(
    source: str,
    data_dir: str | os.PathLike,
    output: str | os.PathLike,
    num_classes: int | None = None,
    resample: str = "none",
    target_count: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 42,
    num_proc: int = 1,
    image_size: int | None = None,
    margin: float = 0.0,
) -> dict:
    """Prepare `source` ("affectnet", "fer2013", "folder") from `data_dir` into `output`.

    Writes `save_to_disk(output)` (train resampled, validation/test untouched),
    `prepare_report.json` (returned too), `fer_hf_dataset.json`, `class_distribution.png` and,
    when valence/arousal exist, `valence_arousal.png`. An earlier prepared dataset in `output` is
    replaced once the new one is built; any other non-empty folder is refused.
    """
    settings = _Settings(
        source,
        num_classes,
        resample,
        target_count,
        val_fraction,
        seed,
        num_proc,
        image_size,
        margin,
    )
    root = _data_root(data_dir)
    out = _check_output(output, root)
    created = not out.exists()
    build = out / BUILD_DIR
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    try:
        splits, report, columns = _build(settings, root, str(build))
        for entry in out.iterdir():  # an earlier prepared dataset, replaced only now it's built
            if entry.name == BUILD_DIR:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        started = time.perf_counter()
        # Single process on purpose: rows are already encoded, so writing is I/O-bound, and
        # datasets' multi-process save spawns fresh interpreters (seconds each, fragile in REPLs).
        splits.save_to_disk(str(out))
        report["save_s"] = round(time.perf_counter() - started, 3)
    except BaseException:
        shutil.rmtree(out if created else build, ignore_errors=True)
        raise
    shutil.rmtree(build, ignore_errors=True)
    report["output"] = str(out)
    names = report["class_names"]
    plot_class_distribution(report, out / "class_distribution.png")
    va_plot = plot_valence_arousal(
        columns["label"], columns["valence"], columns["arousal"], names, out / "valence_arousal.png"
    )
    report["plots"] = ["class_distribution.png"] + (["valence_arousal.png"] if va_plot else [])
    write_json(out / PREPARE_REPORT_FILE, report)
    metadata = {
        "format": PREPARED_FORMAT,
        "version": PREPARED_VERSION,
        "num_classes": len(names),
        "class_names": names,
        "source": source,
        "layout": report["layout"],
        "data_dir": report["data_dir"],
        "resample": resample,
        "target_count": target_count,
        "seed": seed,
        "val_fraction": val_fraction,
        "image_size": image_size,
        "margin": margin,
        "splits": report["splits"],
    }
    write_json(out / DATASET_METADATA_FILE, metadata)
    return report


def load_prepared(path: str | os.PathLike) -> datasets.DatasetDict:
    """Load a folder written by `prepare`, after checking it is one of this schema."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Prepared dataset {path} does not exist (or is not a folder).")
    meta_path = folder / DATASET_METADATA_FILE
    fix = "create it with `fer-hf prepare {affectnet,fer2013,folder} --output ...`"
    if not meta_path.is_file():
        raise ValueError(
            f"{path} is not a fer-hf prepared dataset: no {DATASET_METADATA_FILE}; {fix}."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path} is not valid JSON ({err}); {fix}.") from None
    if not isinstance(meta, dict) or meta.get("format") != PREPARED_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_path} has format {found!r}, expected {PREPARED_FORMAT!r}; {fix}.")
    if meta.get("version") != PREPARED_VERSION:
        raise ValueError(
            f"{meta_path} is schema version {meta.get('version')!r}; this fer-hf reads version "
            f"{PREPARED_VERSION}. Re-run `fer-hf prepare` on the raw data."
        )
    num_classes = meta.get("num_classes")
    if num_classes not in labels.SUPPORTED_NUM_CLASSES:
        raise ValueError(
            f"{meta_path}: num_classes is {num_classes!r}, expected one of "
            f"{labels.SUPPORTED_NUM_CLASSES}."
        )
    names = list(labels.class_names(num_classes))
    if meta.get("class_names") != names:
        raise ValueError(
            f"{meta_path}: class_names {meta.get('class_names')} differ from the schema's {names} "
            f"for {num_classes} classes; re-run `fer-hf prepare`."
        )
    try:
        splits = datasets.load_from_disk(str(folder))
    except FileNotFoundError as err:
        raise ValueError(
            f"{path} has {DATASET_METADATA_FILE} but no saved splits ({err}); {fix}."
        ) from None
    if not isinstance(splits, datasets.DatasetDict):
        raise ValueError(f"{path} holds a single Dataset, expected a DatasetDict of splits; {fix}.")
    missing = [s for s in ("train", "validation") if s not in splits]
    if missing:
        raise ValueError(f"{path} has splits {list(splits)}, missing {missing}; {fix}.")
    expected = prepared_features(names)
    for split, dataset in splits.items():
        if dataset.features != expected:
            diff = sorted(
                name
                for name in set(expected) | set(dataset.features)
                if expected.get(name) != dataset.features.get(name)
            )
            raise ValueError(
                f"{path}: split {split!r} has features that differ from the fer-hf schema in "
                f"{diff} (expected {dict(expected)}); {fix}."
            )
    return splits


def format_class_table(report: dict) -> str:
    """The per-class counts of a `prepare` report as a fixed-width text table."""
    names = report["class_names"]
    header, columns = ["class"], []
    for split in report["splits"]:
        before, after = report["class_counts_before"][split], report["class_counts_after"][split]
        header.append(split)
        columns.append([before[n] for n in names])
        if before != after:
            header.append(f"{split} ({report['resample']})")
            columns.append([after[n] for n in names])
    rows = [[name, *(f"{c[i]:,}" for c in columns)] for i, name in enumerate(names)]
    rows.append(["total", *(f"{sum(c):,}" for c in columns)])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(
            c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    lines = [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    lines.append(
        f"{report['num_skipped']:,} skipped, {report['num_excluded']:,} excluded "
        f"{report['excluded'] or ''}".rstrip()
    )
    return "\n".join(lines)
