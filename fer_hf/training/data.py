"""Training data: load a prepared folder (or prepare a raw source on the fly), check, describe.

Imports fer_hf.data and fer_hf.labels only; every check runs before a model is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from ..artifacts import DATASET_METADATA_FILE, PREPARE_REPORT_FILE, read_json
from ..data import build_dataset, class_counts, load_prepared, resample_indices
from ..labels import class_names

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The splits a run uses (untransformed) and what the train summary says about them."""

    train: datasets.Dataset
    eval: datasets.Dataset
    test: datasets.Dataset | None
    num_classes: int
    info: dict = field(default_factory=dict)
    # The prepared splits the views above select from, and the selected rows, in view order:
    # the decode cache holds a whole split once, views index into it.
    train_base: datasets.Dataset | None = None
    train_rows: np.ndarray | None = None
    eval_base: datasets.Dataset | None = None
    eval_rows: np.ndarray | None = None

    @property
    def label_names(self) -> list[str]:
        return list(class_names(self.num_classes))


def _split(splits: datasets.DatasetDict, name: str, role: str, where: str) -> datasets.Dataset:
    if name not in splits:
        raise ValueError(
            f"{where} has no split {name!r} (the {role} split); it has {sorted(splits)}. "
            f"Pass one of them as --{role}_split."
        )
    if len(splits[name]) == 0:
        raise ValueError(f"The {role} split {name!r} of {where} is empty; re-run `fer-hf prepare`.")
    return splits[name]


def _counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    return dict(zip(names, class_counts(labels, len(names)), strict=True))


def load_training_data(data_args, seed: int) -> TrainingData:
    """Load and check the data of a run (`DataArguments`); `seed` drives load-time resampling.

    Raises `FileNotFoundError`/`ValueError` naming the problem for a missing path, a folder of
    another schema, a missing or empty split, a class count that differs from `num_classes`, or a
    resampling request on a split that `prepare` already resampled.
    """
    path = Path(data_args.dataset).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Dataset {data_args.dataset!r} does not exist.")
    if data_args.source == "prepared":
        if not (path / DATASET_METADATA_FILE).is_file():
            raise ValueError(
                f"{data_args.dataset} is not a `fer-hf prepare` folder (no "
                f"{DATASET_METADATA_FILE}). Prepare it first, or pass --source "
                "fer2013|affectnet|folder to prepare it on the fly."
            )
        splits = load_prepared(path)
        metadata = read_json(path / DATASET_METADATA_FILE, "fer-hf prepared-dataset metadata")
        report_path = path / PREPARE_REPORT_FILE
        report = (
            read_json(report_path, "`fer-hf prepare`'s report") if report_path.is_file() else {}
        )
        name, prepared_resample = metadata.get("source"), metadata.get("resample", "none")
        if data_args.resample not in (None, "none") and prepared_resample != "none":
            raise ValueError(
                f"{data_args.dataset} was prepared with resample={prepared_resample!r}; resampling "
                f"it again with {data_args.resample!r} would compound both. Drop --resample or "
                "prepare the data with --resample none."
            )
    else:
        prepared_resample = "oversample" if data_args.resample is None else data_args.resample
        logger.info("Preparing %s from %s on the fly.", data_args.source, path)
        splits, report = build_dataset(
            data_args.source,
            path,
            num_classes=data_args.num_classes,
            resample=prepared_resample,
            seed=seed,
        )
        name = data_args.source
    num_classes = splits["train"].features["label"].num_classes
    if data_args.num_classes is not None and data_args.num_classes != num_classes:
        raise ValueError(
            f"--num_classes {data_args.num_classes} differs from the data's {num_classes} classes "
            f"in {data_args.dataset}; drop the flag or prepare the data with --classes "
            f"{data_args.num_classes}."
        )
    names = list(class_names(num_classes))
    train = _split(splits, data_args.train_split, "train", data_args.dataset)
    evaluation = _split(splits, data_args.eval_split, "eval", data_args.dataset)
    test = None
    if (
        data_args.test_split
        and data_args.test_split in splits
        and data_args.test_split not in (data_args.train_split, data_args.eval_split)
    ):
        test = _split(splits, data_args.test_split, "test", data_args.dataset)

    before = report.get("class_counts_before", {}).get(data_args.train_split)
    resample = prepared_resample
    train_base, eval_base = train, evaluation
    train_rows, eval_rows = np.arange(len(train)), np.arange(len(evaluation))
    if data_args.source == "prepared" and data_args.resample not in (None, "none"):
        before = _counts(np.asarray(train["label"]), names)
        train_rows = resample_indices(np.asarray(train["label"]), data_args.resample, seed)
        train = train.select(train_rows)
        resample = data_args.resample
    if data_args.max_train_samples is not None:
        train_rows = train_rows[: data_args.max_train_samples]
        train = train.select(range(len(train_rows)))
    if data_args.max_eval_samples is not None:
        eval_rows = eval_rows[: data_args.max_eval_samples]
        evaluation = evaluation.select(range(len(eval_rows)))
    train_labels = np.asarray(train["label"], dtype=np.int64)
    info = {
        "path": str(path.resolve()),
        "name": name,
        "num_classes": num_classes,
        "class_names": names,
        "class_counts_before": before or _counts(train_labels, names),
        "class_counts_after": _counts(train_labels, names),
        "resample": resample,
        "splits": {
            "train": data_args.train_split,
            "eval": data_args.eval_split,
            "test": test is not None and data_args.test_split or None,
        },
        "num_records": {
            "train": len(train),
            "eval": len(evaluation),
            **({"test": len(test)} if test is not None else {}),
        },
    }
    return TrainingData(
        train=train,
        eval=evaluation,
        test=test,
        num_classes=num_classes,
        info=info,
        train_base=train_base,
        train_rows=np.asarray(train_rows, dtype=np.int64),
        eval_base=eval_base,
        eval_rows=np.asarray(eval_rows, dtype=np.int64),
    )


def has_valence_arousal(dataset: datasets.Dataset) -> bool:
    """Whether any record of `dataset` carries a known valence value."""
    return bool(np.isfinite(np.asarray(dataset["valence"], dtype=np.float32)).any())


def seeded_sample(dataset: datasets.Dataset, num: int, seed: int) -> datasets.Dataset:
    """Up to `num` records of `dataset`, drawn with `seed`. Shuffled in memory, so no indices
    cache file is written into the folder the dataset was loaded from (the user's data)."""
    count = min(num, len(dataset))
    return dataset.shuffle(seed=seed, keep_in_memory=True).select(range(count))
