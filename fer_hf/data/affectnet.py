"""AffectNet, both releases: original list files with face boxes, and the later cropped npy release.

Original: `Manually_Annotated_file_lists/{training,validation}.csv` (header optional) with
`Manually_Annotated_Images/<subDirectory_filePath>`. Later: `{train,val}_set/images/<id>.jpg` with
`annotations/<id>_{exp,val,aro,lnd}.npy`. Imports only `fer_hf.labels` and `fer_hf.data` siblings.

Policy: a row whose valence or arousal is -2 ("not applicable"), NaN, missing or outside [-1, 1]
while its expression is 0-7 is skipped and reported like any other bad record: AffectNet annotates
both on every expression row, so such a value marks a corrupt row. Codes 8-10 are excluded and
counted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import labels
from ..imaging import IMAGE_EXTENSIONS
from .records import (
    ImageInput,
    Options,
    Scan,
    SkipRecord,
    index_csv,
    read_csv_row,
    stat_key,
)

LISTS_DIR = "Manually_Annotated_file_lists"
IMAGES_DIRS: tuple[str, ...] = (
    "Manually_Annotated_Images",
    "Manually_Annotated/Manually_Annotated_Images",
)
LIST_FILES: dict[str, str] = {"training.csv": "train", "validation.csv": "test"}
COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c != "facial_landmarks")
SET_DIRS: dict[str, str] = {"train_set": "train", "val_set": "test"}
ANNOTATIONS = ("exp", "val", "aro")


def _expression(raw: str, num_classes: int) -> tuple[int | None, str | None]:
    """(class index, None), (None, excluded category) or raises SkipRecord for a bad code."""
    try:
        value = float(raw)
    except ValueError:
        raise SkipRecord(f"expression {raw!r} is not a number") from None
    if not value.is_integer():
        raise SkipRecord(f"expression {raw!r} is not an integer code")
    code = int(value)
    if code in labels.AFFECTNET_NON_EXPRESSION:
        return None, labels.AFFECTNET_NON_EXPRESSION[code]
    if code not in labels.AFFECTNET_CODES:
        raise SkipRecord(
            f"unknown expression code {code}; expected 0-7 (expressions) or 8-10 (none, "
            "uncertain, no-face)"
        )
    index = labels.index_of(labels.AFFECTNET_CODES[code], num_classes)
    if index is None:
        return None, labels.AFFECTNET_CODES[code]
    return index, None


def _affect(name: str, raw: str) -> float:
    """A valence/arousal value in [-1, 1]; raises SkipRecord for -2, NaN or anything else."""
    try:
        value = float(raw)
    except ValueError:
        raise SkipRecord(f"{name} {raw!r} is not a number") from None
    if value == labels.AFFECTNET_VA_NOT_APPLICABLE:
        raise SkipRecord(f"{name} is -2 (not applicable) on an expression row")
    if not -1.0 <= value <= 1.0:  # NaN fails this too
        raise SkipRecord(f"{name} {raw!r} is outside [-1, 1]")
    return value


# --- original release -------------------------------------------------------------------------


def _list_reader(item: tuple, options: Options) -> dict:
    csv_path, csv_name, row_number, offset, columns, images_dir, split = item
    file = f"{csv_name}:row {row_number}"
    fields = read_csv_row(csv_path, offset)
    if len(fields) != columns["count"]:
        return {"source": file, "skip": f"expected {columns['count']} fields, got {len(fields)}"}
    value = {name: fields[index].strip() for name, index in columns.items() if name != "count"}
    relative = value["subDirectory_filePath"].replace("\\", "/")
    if not relative or os.path.isabs(relative) or ".." in relative.split("/"):
        return {"source": file, "skip": f"image path {relative!r} is not inside {images_dir}"}
    source = f"{images_dir}/{relative}"
    try:
        label, category = _expression(value["expression"], len(options.class_names))
        if category is not None:
            return {"source": source, "file": file, "excluded": category}
        valence = _affect("valence", value["valence"])
        arousal = _affect("arousal", value["arousal"])
        box = []
        for name in ("face_x", "face_y", "face_width", "face_height"):
            try:
                box.append(float(value[name]))
            except ValueError:
                raise SkipRecord(f"{name} {value[name]!r} is not a number") from None
    except SkipRecord as err:
        return {"source": file, "skip": str(err)}
    return {
        "source": source,
        "file": file,
        "split": split,
        "label": label,
        "valence": valence,
        "arousal": arousal,
        "image": ImageInput(path=os.path.join(options.data_dir, source), box=tuple(box)),
    }


def _column_map(first_row: list[str], csv_path: Path) -> tuple[dict[str, int], bool]:
    """Column indices (+ "count") from the header, or the fixed order when there is none."""
    cells = [cell.strip().lower() for cell in first_row]
    if "subdirectory_filepath" in cells or "expression" in cells:
        missing = [c for c in REQUIRED_COLUMNS if c.lower() not in cells]
        if missing:
            raise ValueError(
                f"{csv_path} has no {', '.join(repr(c) for c in missing)} column (header: "
                f"{first_row}); expected the columns {', '.join(COLUMNS)}."
            )
        columns = {c: cells.index(c.lower()) for c in REQUIRED_COLUMNS}
        return {**columns, "count": len(cells)}, True
    if len(first_row) != len(COLUMNS):
        raise ValueError(
            f"{csv_path}: the first row is neither a header nor a data row ({len(first_row)} "
            f"fields); expected the {len(COLUMNS)} columns {', '.join(COLUMNS)}, with or "
            "without a header row."
        )
    return {**{c: COLUMNS.index(c) for c in REQUIRED_COLUMNS}, "count": len(COLUMNS)}, False


def _scan_original(data_dir: Path) -> Scan:
    lists = data_dir / LISTS_DIR
    images_dir = next((d for d in IMAGES_DIRS if (data_dir / d).is_dir()), None)
    if images_dir is None:
        raise ValueError(
            f"{data_dir} has {LISTS_DIR}/ but no {IMAGES_DIRS[0]}/ folder; expected the images "
            f"at {IMAGES_DIRS[0]}/<subDirectory_filePath>."
        )
    if not (lists / "training.csv").is_file():
        raise ValueError(
            f"{lists} has no training.csv; expected training.csv (and validation.csv) with the "
            f"columns {', '.join(COLUMNS)}."
        )
    scan = Scan(layout="affectnet-original", reader=_list_reader)
    for file_name, split in LIST_FILES.items():
        csv_path = lists / file_name
        if not csv_path.is_file():
            continue
        first_row, rows = index_csv(str(csv_path), desc=f"Indexing {file_name}")
        if first_row is None:
            continue
        columns, has_header = _column_map(first_row, csv_path)
        name = f"{LISTS_DIR}/{file_name}"
        scan.items.extend(
            (str(csv_path), name, row_number, offset, columns, images_dir, split)
            for row_number, offset in (rows[1:] if has_header else rows)
        )
        scan.fingerprint_parts.append(stat_key(str(csv_path)))
        scan.splits_provided += (split,)
    return scan


# --- later release --------------------------------------------------------------------------


def _load_annotation(path: str, source: str) -> str:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SkipRecord(f"annotation {source} is missing") from None
    except (OSError, ValueError, EOFError) as err:
        raise SkipRecord(f"annotation {source} cannot be read ({err})") from None
    if array.size != 1:
        raise SkipRecord(f"annotation {source} holds {array.size} values, expected 1")
    return str(array.reshape(()).item())


def _npy_reader(item: tuple, options: Options) -> dict:
    set_dir, image_name, split = item
    source = f"{set_dir}/images/{image_name}"
    stem = os.path.splitext(image_name)[0]
    values = {}
    try:
        for kind in ANNOTATIONS:
            relative = f"{set_dir}/annotations/{stem}_{kind}.npy"
            values[kind] = _load_annotation(os.path.join(options.data_dir, relative), relative)
        label, category = _expression(values["exp"], len(options.class_names))
        if category is not None:
            return {"source": source, "excluded": category}
        valence = _affect("valence", values["val"])
        arousal = _affect("arousal", values["aro"])
    except SkipRecord as err:
        return {"source": source, "skip": str(err)}
    return {
        "source": source,
        "split": split,
        "label": label,
        "valence": valence,
        "arousal": arousal,
        "image": ImageInput(path=os.path.join(options.data_dir, source)),
    }


def _scan_later(data_dir: Path) -> Scan:
    scan = Scan(layout="affectnet-npy", reader=_npy_reader)
    for set_dir, split in SET_DIRS.items():
        root = data_dir / set_dir
        if not root.is_dir():
            continue
        for sub in ("images", "annotations"):
            if not (root / sub).is_dir():
                raise ValueError(
                    f"{root} has no {sub}/ folder; expected images/<id>.jpg and "
                    "annotations/<id>_{exp,val,aro,lnd}.npy."
                )
        images = {}
        for entry in sorted(os.scandir(root / "images"), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            stem, extension = os.path.splitext(entry.name)
            if extension.lower() not in IMAGE_EXTENSIONS:
                scan.skipped.append(
                    {
                        "file": f"{set_dir}/images/{entry.name}",
                        "reason": f"not an image file (extension {extension or 'none'!r})",
                    }
                )
                continue
            images[stem] = entry.name
            st = entry.stat()
            scan.fingerprint_parts.append((entry.path, st.st_size, st.st_mtime_ns))
        annotated = {
            name[: -len("_exp.npy")]
            for name in os.listdir(root / "annotations")
            if name.endswith("_exp.npy")
        }
        for stem in sorted(annotated - images.keys()):
            scan.skipped.append(
                {
                    "file": f"{set_dir}/annotations/{stem}_exp.npy",
                    "reason": f"no image for it in {set_dir}/images/",
                }
            )
        scan.items.extend((set_dir, images[stem], split) for stem in sorted(images))
        scan.splits_provided += (split,)
    return scan


def scan(data_dir: Path, num_classes: int | None) -> tuple[Scan, tuple[str, ...]]:
    """Detect which AffectNet release `data_dir` holds and scan it."""
    names = labels.class_names(num_classes or 8)
    if (data_dir / LISTS_DIR).is_dir():
        return _scan_original(data_dir), names
    if any((data_dir / d).is_dir() for d in SET_DIRS):
        return _scan_later(data_dir), names
    found = sorted(p.name for p in data_dir.iterdir())[:10] if data_dir.is_dir() else []
    raise ValueError(
        f"Unknown AffectNet layout in {data_dir}: expected either the original release "
        f"({LISTS_DIR}/training.csv and validation.csv with {IMAGES_DIRS[0]}/) or the later one "
        "(train_set/ and val_set/, each with images/<id>.jpg and annotations/<id>_exp.npy, "
        f"_val.npy, _aro.npy); found {found}."
    )
