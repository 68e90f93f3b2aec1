"""Open a data path as labelled images: the one reader of prepared folders, class-folder trees
(with split folders under any alias of `SPLIT_ALIASES`) and plain image folders.

`load_eval_split` gives `fer-hf evaluate` and the release a whole split as a `datasets.Dataset`;
`load_sample` / `image_source` give the ONNX export a random sample of PIL images (the export
takes them from its caller, as Optimum's quantizer takes a calibration dataset). Imports only
`fer_hf.artifacts`, `fer_hf.labels` and data siblings.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..artifacts import DATASET_METADATA_FILE
from ..imaging import IMAGE_EXTENSIONS
from ..labels import canonical_name, normalise_name
from .folders import SPLIT_ALIASES, find_split_folders, load_class_folders
from .prepare import load_prepared

# Which split each purpose reads first (then whichever split exists).
PREFERRED_SPLITS = {"calibration": ("train",), "validation": ("validation", "test")}


def canonical_split(split: str) -> str:
    """`split` as train/validation/test when it is a known alias (`val`, `PublicTest`, ...)."""
    return SPLIT_ALIASES.get(normalise_name(split), split)


def _is_datasets_folder(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


def load_eval_split(data: str | os.PathLike, split: str, label_names: Sequence[str]):
    """(dataset, description) of `split` from a `fer-hf prepare` folder or a class-folder tree
    (a tree without split folders is used whole). Labels must match `label_names` exactly."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {data} does not exist (or is not a folder).")
    if (root / DATASET_METADATA_FILE).is_file():
        splits = load_prepared(root)
        data_labels = splits["train"].features["label"].names
        if list(data_labels) != list(label_names):
            raise ValueError(
                f"The model predicts {list(label_names)} but {data} is labelled {data_labels}; "
                "evaluate a model trained on the same label schema (7 vs 8 classes)."
            )
        name = split if split in splits else canonical_split(split)
        if name not in splits:
            raise ValueError(
                f"{data} has no split {split!r}; it has {sorted(splits)}. Pass one with --split."
            )
        return splits[name], {"kind": "prepared", "split": name}
    if _is_datasets_folder(root):
        raise ValueError(
            f"{data} is a `datasets` folder but not a fer-hf prepared dataset (no "
            f"{DATASET_METADATA_FILE}); re-create it with `fer-hf prepare`."
        )
    folders = find_split_folders(root)
    if not folders:
        dataset, skipped = load_class_folders(root, label_names, return_skipped=True)
        return dataset, {"kind": "class-folders", "split": None, "skipped": skipped}
    name = canonical_split(split)
    if name not in folders:
        raise ValueError(
            f"{data} has no {split!r} split folder; it has {sorted(folders.values())}. "
            "Pass one with --split."
        )
    dataset, skipped = load_class_folders(root / folders[name], label_names, return_skipped=True)
    skipped = [{**s, "file": f"{folders[name]}/{s['file']}"} for s in skipped]  # relative to data
    return dataset, {"kind": "class-folders", "split": name, "skipped": skipped}


@dataclass
class Sample:
    """Images (RGB or L as stored) with canonical label names, or None when unlabelled."""

    images: list[Image.Image]
    labels: list[str] | None
    source: str
    skipped: list[str] = field(default_factory=list)  # "path: reason" for unreadable records


def load_sample(data: str | os.PathLike, purpose: str, num_samples: int, seed: int = 0) -> Sample:
    """Up to `num_samples` images from `data`, chosen at random with `seed`.

    `data` is a `fer-hf prepare` folder (or any saved `DatasetDict`), a class-folder tree
    (optionally split into train/, val/, test/ or their aliases) or a plain image folder.
    `purpose` picks the split: "calibration" reads training images, "validation" held-out ones
    (falling back to whatever split exists).
    """
    if purpose not in PREFERRED_SPLITS:
        raise ValueError(f"`purpose` must be 'calibration' or 'validation', got {purpose!r}.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int, got {num_samples!r}.")
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Sample data {str(root)!r} is not a folder; expected a `fer-hf prepare` output, a "
            "class-folder tree or a folder of images."
        )
    preferred = PREFERRED_SPLITS[purpose]
    if (root / "dataset_dict.json").is_file():
        return _from_prepared(root, preferred, num_samples, seed)
    folders = find_split_folders(root)
    if folders:  # e.g. train/ + test/
        order = (*preferred, "train", "validation", "test")
        name = next(s for s in order if s in folders)
        return _from_folder(root / folders[name], num_samples, seed)
    return _from_folder(root, num_samples, seed)


def image_source(data: str | os.PathLike) -> Callable[[str, int, int], Sample]:
    """`load_sample` bound to `data`: what `fer_hf.export.export_model(data=...)` draws its
    calibration and parity images from, as `source(purpose, num_samples, seed)`."""
    return functools.partial(load_sample, data)


def _from_prepared(root: Path, preferred: tuple[str, ...], num_samples: int, seed: int) -> Sample:
    from datasets import load_from_disk

    dataset_dict = load_from_disk(str(root))
    available = list(dataset_dict.keys())
    name = next((n for n in (*preferred, *available) if n in dataset_dict), None)
    if name is None:
        raise ValueError(f"Prepared dataset {str(root)!r} has no splits.")
    split = dataset_dict[name]
    if "image" not in split.column_names:
        raise ValueError(
            f"Split {name!r} of {str(root)!r} has no 'image' column; it has {split.column_names}."
        )
    indices = list(range(len(split)))
    random.Random(seed).shuffle(indices)
    rows = split.select(indices[:num_samples])
    names = None
    if "label" in rows.column_names and hasattr(rows.features["label"], "names"):
        names = [rows.features["label"].names[i] for i in rows["label"]]
    return Sample(images=list(rows["image"]), labels=names, source=f"{root}[{name}]")


def _from_folder(root: Path, num_samples: int, seed: int) -> Sample:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; expected a "
            "`fer-hf prepare` output, a class-folder tree or a folder of images."
        )
    # A class-folder tree: every image sits in a folder named after an expression.
    names = [canonical_name(p.parent.name) if p.parent != root else None for p in files]
    labelled = all(n is not None for n in names)
    random.Random(seed).shuffle(order := list(range(len(files))))
    images, labels, skipped = [], [], []
    for i in order:
        if len(images) == num_samples:
            break
        try:
            with Image.open(files[i]) as image:
                image.load()
                images.append(image.copy())
        except (OSError, SyntaxError, ValueError) as err:
            skipped.append(f"{files[i]}: {err}")
            continue
        labels.append(names[i])
    return Sample(images, labels if labelled else None, str(root), skipped)


__all__ = [
    "PREFERRED_SPLITS",
    "Sample",
    "canonical_split",
    "image_source",
    "load_eval_split",
    "load_sample",
]
