"""Image samples for calibration and parity checks, read straight from disk with PIL.

Accepts a `fer-hf prepare` folder (read with `datasets.load_from_disk`), a class-folder tree
(optionally split into train/ and val/ or test/) or a plain image folder. Must not import
fer_hf.data (the layering test forbids it), training, hub, inference or cli.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fer_hf.labels import canonical_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
_TRAIN_NAMES = ("train", "training")
_EVAL_NAMES = ("validation", "val", "valid", "test", "testing")


@dataclass
class Sample:
    """Images (RGB or L as stored) with canonical label names, or None when unlabelled."""

    images: list[Image.Image]
    labels: list[str] | None
    source: str
    skipped: list[str] = field(default_factory=list)  # "path: reason" for unreadable records


def load_sample(data: str | Path, purpose: str, num_samples: int, seed: int = 0) -> Sample:
    """Up to `num_samples` images from `data`, chosen at random with `seed`.

    `purpose` picks the split: "calibration" reads training images, "validation" held-out ones
    (falling back to whatever split exists).
    """
    if purpose not in ("calibration", "validation"):
        raise ValueError(f"`purpose` must be 'calibration' or 'validation', got {purpose!r}.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int, got {num_samples!r}.")
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Sample data {str(root)!r} is not a folder; expected a `fer-hf prepare` output, a "
            "class-folder tree or a folder of images."
        )
    preferred = _TRAIN_NAMES if purpose == "calibration" else _EVAL_NAMES
    if (root / "dataset_dict.json").is_file():
        return _from_prepared(root, preferred, num_samples, seed)
    splits = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if splits and set(splits) <= set(_TRAIN_NAMES + _EVAL_NAMES):  # e.g. train/ + test/
        name = next(n for n in (*preferred, *_TRAIN_NAMES, *_EVAL_NAMES) if n in splits)
        return _from_folder(splits[name], num_samples, seed)
    return _from_folder(root, num_samples, seed)


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
