"""FER2013: the Kaggle `fer2013.csv` (`emotion,pixels,Usage`) or `train/`, `val/`, `test/` folders.

Imports only `fer_hf.labels` and `fer_hf.data` siblings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .. import labels
from .folders import find_split_folders, scan_class_tree
from .records import ImageInput, Options, Scan, index_csv, read_csv_row, stat_key

CSV_NAME = "fer2013.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("emotion", "pixels")
USAGE_COLUMN = "Usage"
USAGE_SPLITS: dict[str, str] = {
    "training": "train",
    "publictest": "validation",
    "privatetest": "test",
}
IMAGE_SIDE = 48


def _csv_reader(item: tuple, options: Options) -> dict:
    path, name, row_number, offset, emotion_col, pixels_col, usage_col = item
    source = f"{name}:row {row_number}"
    fields = read_csv_row(path, offset)
    needed = max(c for c in (emotion_col, pixels_col, usage_col) if c is not None) + 1
    if len(fields) < needed:
        return {"source": source, "skip": f"row has {len(fields)} fields, expected {needed}"}
    split = "train"
    if usage_col is not None:
        usage = fields[usage_col].strip()
        split = USAGE_SPLITS.get(usage.lower())
        if split is None:
            return {
                "source": source,
                "skip": f"unknown Usage {usage!r}; expected Training, PublicTest or PrivateTest",
            }
    raw_emotion = fields[emotion_col].strip()
    try:
        code = int(raw_emotion)
    except ValueError:
        code = None
    if code not in labels.FER2013_CODES:
        return {
            "source": source,
            "split": split,
            "skip": f"unknown emotion {raw_emotion!r}; expected an integer code 0-6",
        }
    values = fields[pixels_col].split()
    if len(values) != IMAGE_SIDE * IMAGE_SIDE:
        return {
            "source": source,
            "split": split,
            "skip": f"pixels has {len(values)} values, expected {IMAGE_SIDE * IMAGE_SIDE} (48x48)",
        }
    try:
        pixels = np.array(values, dtype=np.int64)
    except ValueError:
        return {"source": source, "split": split, "skip": "pixels are not all integers"}
    if pixels.min() < 0 or pixels.max() > 255:
        return {"source": source, "split": split, "skip": "pixels are outside 0-255"}
    image = Image.fromarray(pixels.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE))
    return {
        "source": source,
        "split": split,
        "label": labels.index_of(labels.FER2013_CODES[code], len(options.class_names)),
        "image": ImageInput(pil=image),
    }


def _scan_csv(csv_path: Path, data_dir: Path) -> Scan:
    name = csv_path.relative_to(data_dir).as_posix() if csv_path != data_dir else csv_path.name
    header, rows = index_csv(str(csv_path), desc=f"Indexing {csv_path.name}")
    if header is None:
        raise ValueError(f"{csv_path} is empty; expected a header `emotion,pixels,Usage` and rows.")
    columns = {column.strip(): i for i, column in enumerate(header)}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{csv_path} has no {' or '.join(repr(c) for c in missing)} column (header: "
            f"{header[:5]}); expected the Kaggle FER2013 header `emotion,pixels,Usage` "
            "(`Usage` optional)."
        )
    usage = columns.get(USAGE_COLUMN)
    scan = Scan(
        layout="fer2013-csv",
        reader=_csv_reader,
        fingerprint_parts=[stat_key(str(csv_path))],
        splits_provided=("train", "validation", "test") if usage is not None else ("train",),
    )
    path = str(csv_path)
    scan.items = [
        (path, name, row_number, offset, columns["emotion"], columns["pixels"], usage)
        for row_number, offset in rows[1:]  # rows[0] is the header
    ]
    return scan


def scan(data_dir: Path, num_classes: int | None) -> tuple[Scan, tuple[str, ...]]:
    """Detect the FER2013 layout in `data_dir` (a folder, or the CSV itself) and scan it."""
    names = labels.class_names(num_classes or 7)
    if data_dir.is_file():
        if data_dir.suffix.lower() != ".csv":
            raise ValueError(
                f"{data_dir} is a file but not a CSV; expected the Kaggle {CSV_NAME} or a folder."
            )
        return _scan_csv(data_dir, data_dir), names
    if (data_dir / CSV_NAME).is_file():
        return _scan_csv(data_dir / CSV_NAME, data_dir), names
    if "train" in find_split_folders(data_dir):
        return scan_class_tree(data_dir, names, layout="fer2013-folders", require_splits=True)
    raise ValueError(
        f"Unknown FER2013 layout in {data_dir}: expected {CSV_NAME} (Kaggle: emotion,pixels,"
        "Usage) or train/ (+ val/ or test/) folders of class folders (angry/, happy/, ...); "
        f"found {sorted(p.name for p in data_dir.iterdir())[:10]}."
    )
