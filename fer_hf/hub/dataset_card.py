"""Render the dataset card of a `fer-hf prepare` folder: schema, split/resampling recipe, classes.

Reads only the folder's JSON files (never the images); must not import fer_hf.cli.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from ..artifacts import DATASET_METADATA_FILE, PREPARE_REPORT_FILE, PREPARED_FORMAT, read_json
from .sources import data_source

TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"
MEANINGS = {
    "image": "the face crop, RGB or L as in the source",
    "label": "expression index in the canonical fer-hf order",
    "valence": "valence in [-1, 1]; NaN when unknown",
    "arousal": "arousal in [-1, 1]; NaN when unknown",
    "source": "where the record came from, relative to `--data-dir` (path or `file.csv:row N`)",
}
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def _feature_type(feature: dict[str, Any]) -> str:
    kind = feature.get("_type", "?")
    if kind == "Value":
        return f"`Value({feature.get('dtype')})`"
    if kind == "ClassLabel":
        return f"`ClassLabel` ({len(feature.get('names', []))} names)"
    return f"`{kind}()`"


def _schema_rows(folder: Path, split: str) -> list[tuple[str, str, str]]:
    info = folder / split / "dataset_info.json"
    if not info.is_file():
        raise FileNotFoundError(
            f"{info} is missing; {folder} is not a complete `fer-hf prepare` output (re-run it)."
        )
    features = read_json(info, "a datasets `dataset_info.json`").get("features", {})
    return [(name, _feature_type(f), MEANINGS.get(name, "")) for name, f in features.items()]


def _command(meta: dict[str, Any]) -> str:
    args = [f"fer-hf prepare {meta['source']} --data-dir DATA --output OUT"]
    args.append(f"--classes {meta['num_classes']} --resample {meta.get('resample', 'none')}")
    for key, flag in (("target_count", "--target-count"), ("image_size", "--image-size")):
        if meta.get(key) is not None:
            args.append(f"{flag} {meta[key]}")
    args.append(f"--val-fraction {meta.get('val_fraction')} --seed {meta.get('seed')}")
    if meta.get("margin"):
        args.append(f"--margin {meta['margin']}")
    return " \\\n    ".join(args)


def _reason_kind(reason: str) -> str:
    """A skip reason without its particulars, e.g. "annotation <file> is missing"."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "<value>", reason)
    reason = re.sub(r"\([^)]*\)", "", reason)  # (the OS error), (x=.., y=..)
    reason = re.sub(r"\S*[/\\]\S*|\S+\.(?:jpe?g|png|npy|csv|bmp|webp|tiff?)\b", "<file>", reason)
    return re.sub(r"-?\d+(?:\.\d+)?", "N", " ".join(reason.split()))


def _skip_rows(report: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """Skipped records grouped by kind of reason, then the excluded non-expression codes."""
    kinds = Counter(_reason_kind(str(s.get("reason", "?"))) for s in report.get("skipped", []))
    common = kinds.most_common(limit)
    rows = [(kind, f"{n:,}") for kind, n in common]
    rest = sum(kinds.values()) - sum(n for _, n in common)
    if rest:
        rows.append(("other reasons", f"{rest:,}"))
    rows += [(f"excluded: {code}", f"{n:,}") for code, n in (report.get("excluded") or {}).items()]
    return rows


def render_dataset_card(prepared_dir: str | Path, license: str | None = None) -> DatasetCard:
    """The dataset card of a `fer-hf prepare` output folder, from its `fer_hf_dataset.json` and
    `prepare_report.json`. Unknown sources (class folders) need `license`."""
    folder = Path(prepared_dir)
    meta_path, report_path = folder / DATASET_METADATA_FILE, folder / PREPARE_REPORT_FILE
    for path in (meta_path, report_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing; pass a folder written by `fer-hf prepare --output`."
            )
    meta = read_json(meta_path, "fer-hf prepared-dataset metadata")
    if meta.get("format") != PREPARED_FORMAT:
        raise ValueError(
            f"{meta_path} has format {meta.get('format')!r}, expected {PREPARED_FORMAT!r}; pass "
            "a folder written by `fer-hf prepare`."
        )
    report = read_json(report_path, "`fer-hf prepare`'s report")
    source = data_source(meta.get("source"))
    if source is None and license is None:
        raise ValueError(
            f"The licence of source {meta.get('source')!r} is unknown to fer-hf; pass `license=` "
            "(the licence of the images you prepared)."
        )
    names, splits = list(meta["class_names"]), list(report["splits"])
    total = sum(report["num_records"].values())
    pretty_source = source.pretty_name if source else f"A class-folder dataset (`{meta['source']}`)"
    pretty_name = (
        f"{source.pretty_name if source else meta['source']} ({len(names)} classes, fer-hf)"
    )
    before, after = report["class_counts_before"], report["class_counts_after"]
    columns, counts = [], []
    for split in splits:
        if before[split] != after[split]:
            columns += [f"{split} (before)", f"{split} (after {meta.get('resample')})"]
            counts += [before[split], after[split]]
        else:
            columns.append(split)
            counts.append(after[split])
    count_rows = [[c, *(f"{col.get(c, 0):,}" for col in counts)] for c in names]
    count_rows.append(["**total**", *(f"{sum(col.values()):,}" for col in counts)])
    skipped, excluded = report.get("num_skipped", 0), report.get("num_excluded", 0)
    licence_fields = (
        {"license": license}
        if license is not None
        else {
            "license": "other",
            "license_name": source.license_name,
            "license_link": source.license_link,
        }
    )
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        size_categories=[next((tag for limit, tag in _SIZES if total < limit), "1M<n<10M")],
        tags=["fer-hf", "facial-expression-recognition"]
        + (["valence-arousal"] if report.get("num_with_valence_arousal") else []),
        **licence_fields,
    )
    context = {
        "pretty_name": pretty_name,
        "pretty_source": pretty_source,
        "layout_sentence": f"layout `{report.get('layout')}`, {total:,} records",
        "licence_sentence": (
            "the source's terms do not grant redistribution of its images."
            if source
            else "the images stay with their owner."
        ),
        "command": _command(meta),
        "schema_rows": _schema_rows(folder, splits[0]),
        "class_names": names,
        "split_rows": [
            (s, f"{report['num_records'][s]:,}", report.get("split_origin", {}).get(s, "source"))
            for s in splits
        ],
        "resample_sentence": (
            f"Resampling of the train split: `{meta.get('resample')}` (seed {meta.get('seed')}"
            + (f", target {meta['target_count']} per class" if meta.get("target_count") else "")
            + "), by index selection: oversampled records repeat, no image bytes are duplicated. "
            "Validation and test are never resampled, and no record is in two splits."
        ),
        "count_columns": columns,
        "count_rows": count_rows,
        "plot": "class_distribution.png" if (folder / "class_distribution.png").is_file() else None,
        "left_out_sentence": (
            f"Skipped as unreadable or invalid: {skipped:,}; excluded as non-expressions: "
            f"{excluded:,}. Records with valence/arousal: "
            f"{report.get('num_with_valence_arousal', 0):,}. `prepare_report.json` lists every "
            "skipped record with its reason."
        ),
        "skip_rows": _skip_rows(report),
        "licence_paragraph": (
            source.terms if source and license is None else f"Released under `{license}`."
        ),
        "bibtex": source.bibtex if source else None,
    }
    card = DatasetCard.from_template(card_data, template_path=str(TEMPLATE), **context)
    return DatasetCard(re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n")
