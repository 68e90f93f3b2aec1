"""Generated data and tiny models shared by the training/evaluation tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fer_hf.labels import class_names

# Per-class image counts of the generated train split: imbalanced on purpose.
TRAIN_COUNTS = (14, 10, 8, 12, 6, 9, 11)


def face_like(label: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A grayscale image whose stripe frequency and brightness encode `label` (learnable, and
    robust to the flips, crops and small rotations of the train augmentation)."""
    y, x = np.mgrid[0:size, 0:size] / size
    frequency = 1 + label
    pattern = 0.5 + 0.35 * np.sin(2 * np.pi * frequency * y + rng.uniform(0, 0.5))
    pattern += 0.05 * label / 7 + rng.normal(0, 0.05, (size, size))
    del x
    return Image.fromarray((np.clip(pattern, 0, 1) * 255).astype(np.uint8))


def write_class_tree(
    root: Path, counts_per_split: dict[str, tuple[int, ...]], seed: int = 0
) -> Path:
    """`root/<split>/<class>/<i>.png` for the 7-class schema."""
    rng = np.random.default_rng(seed)
    for split, counts in counts_per_split.items():
        for label, (name, count) in enumerate(zip(class_names(7), counts, strict=True)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                face_like(label, rng).save(folder / f"{i}.png")
    return root


def prepared_dataset(tmp: Path, resample: str = "oversample") -> Path:
    """A `fer-hf prepare` folder with train (imbalanced, then resampled), val and test."""
    from fer_hf.data import prepare

    tree = write_class_tree(tmp / "raw", {"train": TRAIN_COUNTS, "val": (4,) * 7, "test": (3,) * 7})
    out = tmp / "prepared"
    prepare("folder", data_dir=tree, output=out, resample=resample, seed=0)
    return out


def tiny_model_overrides(kind: str = "factorized") -> dict:
    """`model_overrides` (as a config mapping) for the tiny test backbone of `kind`."""
    from fer_hf.models import tiny_config

    return {"backbone_config": tiny_config(kind, image_size=32)}


def save_tiny_model(folder: Path, kind: str = "factorized", image_size: int = 32) -> Path:
    """A freshly initialised tiny `kind` model with its processor saved in `folder` (a teacher
    or a starting point for the training tests)."""
    from fer_hf.models import build_model

    model, processor = build_model(
        kind, image_size=image_size, num_classes=7, **tiny_model_overrides(kind)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
