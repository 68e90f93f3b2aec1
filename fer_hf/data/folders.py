"""Class-folder trees (`<split>/<class>/*.jpg` or `<class>/*.jpg`) matched to label names.

Used by `prepare folder`, FER2013's folder layout and `fer-hf evaluate`. Imports only
`fer_hf.labels` and `fer_hf.data.records`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from datasets.utils import tqdm

from .. import labels
from ..imaging import IMAGE_EXTENSIONS
from .records import (
    ImageInput,
    Options,
    Scan,
    build_records,
    stat_key,
    temporary_cache_dir,
)

logger = logging.getLogger(__name__)

# Split folder names seen in the wild (normalised: lower case, letters only) -> split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "publictest": "validation",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}


def _visible_subdirs(path: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(path)
        if entry.is_dir() and not entry.name.startswith((".", "__"))
    )


def find_split_folders(root: Path) -> dict[str, str]:
    """{split: folder name} of the split folders (train/, val/, test/ or aliases) in `root`."""
    found: dict[str, str] = {}
    for name in _visible_subdirs(root):
        split = SPLIT_ALIASES.get(labels.normalise_name(name))
        if split is None:
            continue
        if split in found:
            raise ValueError(
                f"{root} has two folders for the {split!r} split: {found[split]!r} and {name!r}; "
                "keep one (or rename the other)."
            )
        found[split] = name
    return found


def _read_reader(item: tuple, options: Options) -> dict:
    path, source, split, label = item
    return {"source": source, "split": split, "label": label, "image": ImageInput(path=path)}


def _walk_images(folder: Path, data_dir: Path, split: str, label: int, scan: Scan, bar) -> None:
    """Append every image below `folder` to `scan.items`; other files are reported as skipped."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in list(dirnames):
            path = os.path.join(dirpath, name)
            source = Path(path).relative_to(data_dir).as_posix()
            if os.path.islink(path):  # os.walk does not follow links to folders: say so
                dirnames.remove(name)
                scan.skipped.append(
                    {"file": source, "reason": "symbolic link to a folder (not followed)"}
                )
            elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                reason = "is a folder, not an image file (its files are read)"
                scan.skipped.append({"file": source, "reason": reason})
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            source = Path(path).relative_to(data_dir).as_posix()
            extension = os.path.splitext(name)[1].lower()
            if extension not in IMAGE_EXTENSIONS:
                scan.skipped.append(
                    {
                        "file": source,
                        "reason": f"not an image file (extension {extension or 'none'!r})",
                    }
                )
                continue
            scan.items.append((path, source, split, label))
            scan.fingerprint_parts.append(stat_key(path))
            bar.update(1)


def match_folders(
    folders: Sequence[str], class_names: Sequence[str], where: Path, exclude_known: bool = True
) -> tuple[dict[str, int], list[str]]:
    """Match class folder names to `class_names` through the schema's synonyms.

    Returns ({folder: class index}, [folders that are schema expressions outside `class_names`,
    e.g. `contempt` with 7 classes, to exclude and count; only with `exclude_known`]). Any other
    folder that matches none of `class_names` is a `ValueError` naming it.
    """
    targets: dict[str, int] = {}
    for index, name in enumerate(class_names):
        targets[labels.canonical_name(name) or labels.normalise_name(name)] = index
    mapping, outside, unknown = {}, [], []
    for folder in folders:
        key = labels.canonical_name(folder) or labels.normalise_name(folder)
        if key in targets:
            mapping[folder] = targets[key]
        elif exclude_known and labels.canonical_name(folder) is not None:
            outside.append(folder)
        else:
            unknown.append(folder)
    if unknown:
        raise ValueError(
            f"Class folder(s) {unknown} in {where} match no label; expected folders named after "
            f"{list(class_names)} (or a synonym such as 'angry', 'happiness'). Rename them or "
            "move them out of the tree."
        )
    return mapping, outside


def scan_class_tree(
    data_dir: Path,
    class_names: Sequence[str] | None,
    layout: str,
    require_splits: bool = False,
    exclude_known: bool = True,
) -> tuple[Scan, tuple[str, ...]]:
    """Scan `<split>/<class>/...` (or `<class>/...`, all train) under `data_dir`.

    `class_names=None` picks the schema: 8 classes when a contempt folder exists, else 7. With
    `exclude_known`, folders of schema expressions outside `class_names` are excluded and counted
    (else they are an error, like unknown names). Returns the scan and the class names used.
    """
    splits = find_split_folders(data_dir)
    if require_splits and "train" not in splits:
        raise ValueError(
            f"{data_dir} has no train/ folder; expected train/ (and val/ or test/) folders of "
            f"class folders, found {_visible_subdirs(data_dir)}."
        )
    roots = {split: data_dir / name for split, name in splits.items()} or {"train": data_dir}
    class_folders = {split: _visible_subdirs(root) for split, root in roots.items()}
    if class_names is None:
        every = [f for folders in class_folders.values() for f in folders]
        wants_contempt = any(labels.canonical_name(f) == "contempt" for f in every)
        class_names = labels.class_names(8 if wants_contempt else 7)
    scan = Scan(layout=layout, reader=_read_reader, splits_provided=tuple(roots))
    with tqdm(desc=f"Listing {data_dir.name}", unit=" files") as bar:
        for split, root in roots.items():
            if not class_folders[split]:
                raise ValueError(
                    f"{root} holds no class folders; expected one folder per class "
                    f"(e.g. {root}/happy/*.jpg)."
                )
            mapping, outside = match_folders(class_folders[split], class_names, root, exclude_known)
            for folder in outside:
                name = labels.canonical_name(folder)
                count = sum(len(files) for _, _, files in os.walk(root / folder))
                scan.excluded[name] = scan.excluded.get(name, 0) + count
            for folder, label in mapping.items():
                _walk_images(root / folder, data_dir, split, label, scan, bar)
    return scan, tuple(class_names)


def load_class_folders(
    path: str | os.PathLike,
    class_names: Sequence[str],
    num_proc: int = 1,
    image_size: int | None = None,
    cache_dir: str | None = None,
    return_skipped: bool = False,
):
    """Load a plain class-folder tree with labels indexed as in `class_names` (e.g. a model's).

    Folder names match `class_names` through the schema's synonyms (`angry/` -> `anger`). A tree
    with split folders (`train/`, `val/`, `test/`, ...) gives a `DatasetDict` keyed by split, a
    bare `<class>/` tree a `Dataset`. Features are the prepared-dataset ones (`label` uses
    `class_names`). Unreadable images are skipped, counted and logged as a warning; with
    `return_skipped`, returns `(data, skipped)`, `skipped` being `[{"file", "reason"}]` (file
    relative to `path`).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Class-folder tree {path} does not exist (or is not a folder).")
    if isinstance(class_names, str) or not class_names:
        raise TypeError(f"`class_names` must be a non-empty list of names, got {class_names!r}.")
    has_splits = bool(find_split_folders(root))
    scan, names = scan_class_tree(
        root, list(class_names), layout="class-folders", exclude_known=False
    )
    options = Options(data_dir=str(root), class_names=names, image_size=image_size)
    records, skipped, _, columns = build_records(
        scan, options, num_proc=num_proc, cache_dir=cache_dir or temporary_cache_dir()
    )
    if len(records) == 0:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"No readable images in {root} ({len(skipped)} skipped: {reasons}).")
    if skipped:
        logger.warning(
            "%s: %d file(s) skipped: %s",
            root,
            len(skipped),
            "; ".join(f"{s['file']}: {s['reason']}" for s in skipped),
        )
    parts = {
        split: records.select(np.flatnonzero(columns["split"] == split))
        for split in scan.splits_provided
    }
    data = datasets.DatasetDict(parts) if has_splits else parts["train"]
    return (data, skipped) if return_skipped else data
