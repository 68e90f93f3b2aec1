"""Shared record pipeline: prepared-dataset features, image checks and crops, the streaming build.

Every source module turns its layout into shards of picklable items plus a reader; this module
decodes them in worker processes with `Dataset.from_generator`. Imports only fer_hf.imaging
(the pixel limit and transparency handling every image reader shares).
"""

from __future__ import annotations

import atexit
import codecs
import csv
import errno
import hashlib
import io
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.utils import tqdm
from PIL import Image, ImageOps, UnidentifiedImageError

from ..imaging import MAX_PIXELS, flatten_transparency

# Bookkeeping columns present only while building; dropped before anyone sees the dataset.
STATUS_COLUMNS: tuple[str, ...] = ("_split", "_skip", "_excluded")
ITEMS_PER_SHARD = 2000
_PILLOW_LIMIT_LOCK = threading.Lock()


def prepared_features(class_names: Sequence[str]) -> datasets.Features:
    """The features of every split of a prepared dataset (docs/DESIGN.md, "Prepared datasets")."""
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(class_names)),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "source": datasets.Value("string"),
        }
    )


class SkipRecord(Exception):
    """Raised by readers for a bad record; the message is the reason written to the report."""


@dataclass(frozen=True)
class Options:
    """Per-build settings every reader sees (picklable, identical in all workers)."""

    data_dir: str
    class_names: tuple[str, ...]
    image_size: int | None = None
    margin: float = 0.0


@dataclass
class Scan:
    """What a source's scan found: shards of items for `reader`, plus records it already rejected.

    `reader(item, options)` returns a dict with `source` (the record's path relative to the data
    folder), `split`, and either `skip` (the reason), `excluded` (a category name) or `label`,
    `valence`, `arousal` and `image` (an `ImageInput`). An optional `file` (e.g. `list.csv:row N`)
    is what a skipped record is reported as, when it differs from `source`.
    """

    layout: str
    reader: Callable[..., dict]
    items: list = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    fingerprint_parts: list = field(default_factory=list)
    splits_provided: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageInput:
    """An image to store: a file path or ready-made PIL image, with an optional face box."""

    path: str | None = None
    pil: Image.Image | None = None
    box: tuple[float, float, float, float] | None = None  # (x, y, width, height)


def face_crop_box(
    box: tuple[float, float, float, float], image_size: tuple[int, int], margin: float = 0.0
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of `box` grown by `margin` x its size per side, clamped.

    Raises `SkipRecord` for a box with non-positive size or one that misses the image entirely.
    """
    x, y, w, h = box
    width, height = image_size
    if not all(math.isfinite(v) for v in box) or w <= 0 or h <= 0:
        raise SkipRecord(f"face box (x={x}, y={y}, w={w}, h={h}) has no area")
    # Grow outwards to whole pixels (so a margin never shrinks the box), after rounding away
    # float noise such as 64.00000000001.
    left, top = math.floor(round(x - margin * w, 6)), math.floor(round(y - margin * h, 6))
    right = math.ceil(round(x + w + margin * w, 6))
    bottom = math.ceil(round(y + h + margin * h, 6))
    clamped = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if clamped[0] >= clamped[2] or clamped[1] >= clamped[3]:
        raise SkipRecord(
            f"face box (x={x}, y={y}, w={w}, h={h}) lies outside the {width}x{height} image"
        )
    return clamped


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _open_header(data: bytes) -> Image.Image:
    """`Image.open` (header only) with Pillow's own bomb check off: `encode_image` checks the size
    itself, so the reason names fer-hf's limit and the pixel count, never Pillow's second limit."""
    with _PILLOW_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read_image(path: str) -> tuple[bytes, Image.Image]:
    """The file's bytes and its decoded image; raises `SkipRecord` with the reason otherwise."""
    if os.path.islink(path) and not os.path.exists(path):
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise SkipRecord("symbolic link loop (the link points back to itself)") from None
        raise SkipRecord(f"dangling symbolic link (target {os.readlink(path)!r} is missing)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SkipRecord("file is missing") from None
    except IsADirectoryError:
        raise SkipRecord("is a folder, not an image file") from None
    except OSError as err:
        raise SkipRecord(f"file cannot be read ({err.strerror or err})") from None
    if not raw:
        raise SkipRecord("empty file (0 bytes)")
    try:
        image = _open_header(raw)
    except UnidentifiedImageError:
        raise SkipRecord("not an image (unrecognised format)") from None
    except Exception as err:  # noqa: BLE001 - any decoder failure is this record's problem only
        raise SkipRecord(f"image data is truncated or corrupt ({err})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise SkipRecord(
            f"image is {width}x{height} = {width * height:,} pixels, more than the "
            f"{MAX_PIXELS:,}-pixel limit (a guard against decompression bombs); downscale it"
        )
    try:
        image.load()
    except Exception as err:  # noqa: BLE001 - truncated data, decoder errors, odd modes
        raise SkipRecord(f"image data is truncated or corrupt ({err})") from None
    return raw, image


def _to_storable_mode(image: Image.Image) -> Image.Image:
    """L or RGB: 16-bit and float values scaled (not clipped) to 8 bits, transparency on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            finite = np.isfinite(values)
            values = np.where(finite, values, 0.0)
            if values.size and values.min() >= 0.0 and values.max() <= 1.0:
                values = values * 255.0
        elif image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    image = flatten_transparency(image)
    return image.convert("L" if image.mode == "1" else "RGB")


def encode_image(source: ImageInput, options: Options) -> dict:
    """Check, crop and resize one image; returns the `datasets.Image` storage dict.

    An untouched L/RGB file keeps its original bytes (no re-encoding); anything else (other modes,
    EXIF rotation, crops, resizing) is re-encoded (JPEG quality 95 for JPEG sources, PNG
    otherwise). Raises `SkipRecord` for anything unreadable: missing, empty, not an image,
    truncated or corrupt, a broken link, or more than `MAX_PIXELS` pixels.
    """
    raw = None
    if source.pil is not None:
        image, image_format = source.pil, "PNG"
    else:
        raw, image = _read_image(source.path)
        image_format = image.format
    changed = False
    # EXIF orientation: store the upright image (a face box refers to the stored pixels as is).
    if source.box is None and image.getexif().get(0x0112, 1) != 1:
        image, changed = ImageOps.exif_transpose(image), True
    if image.mode not in ("L", "RGB"):
        image, changed = _to_storable_mode(image), True
    if source.box is not None:
        crop = face_crop_box(source.box, image.size, options.margin)
        if crop != (0, 0, *image.size):
            image, changed = image.crop(crop), True
    if options.image_size is not None:
        resized = _resize_shorter_side(image, options.image_size)
        changed = changed or resized is not image
        image = resized
    if raw is not None and not changed:
        return {"bytes": raw, "path": None}
    buffer = io.BytesIO()
    if image_format in ("JPEG", "MPO"):
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _generate(shards: list, reader: Callable[..., dict], options: Options) -> Iterator[dict]:
    """`Dataset.from_generator` body: one row per item, bad ones flagged in the status columns."""
    for shard in shards:
        for item in shard:
            record = reader(item, options)
            source = record["source"]
            file = record.get("file", source)
            reason, category, image = record.get("skip"), record.get("excluded"), None
            if not reason and not category:
                try:
                    image = encode_image(record["image"], options)
                except SkipRecord as err:
                    reason = str(err) if file == source else f"image {source}: {err}"
                except Exception as err:  # noqa: BLE001 - one bad record never ends the build
                    err = f"cannot be processed ({type(err).__name__}: {err})"
                    reason = err if file == source else f"image {source}: {err}"
            good = image is not None
            yield {
                "image": image,
                "label": record["label"] if good else -1,
                "valence": record.get("valence", math.nan) if good else math.nan,
                "arousal": record.get("arousal", math.nan) if good else math.nan,
                "source": source if good else file,
                "_split": record.get("split") or "",
                "_skip": reason or "",
                "_excluded": category or "",
            }


def fingerprint(scan: Scan, options: Options) -> str:
    """Cache key of a build: settings, layout, items and the inputs' names, sizes and mtimes."""
    digest = hashlib.sha256(repr(("fer-hf-records/2", scan.layout, options)).encode())
    for part in (*scan.items, *scan.fingerprint_parts):  # piecewise: no giant repr in memory
        digest.update(repr(part).encode())
    return digest.hexdigest()[:32]


def temporary_cache_dir() -> str:
    """A fresh folder for Arrow files of an in-process build, removed when the interpreter exits."""
    path = tempfile.mkdtemp(prefix="fer_hf-build-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def stat_key(path: str) -> tuple[str, int, int]:
    """(path, size, mtime_ns) of a file for `Scan.fingerprint_parts`; (path, -1, -1) if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1
    return path, st.st_size, st.st_mtime_ns


def build_records(
    scan: Scan, options: Options, num_proc: int = 1, cache_dir: str | None = None
) -> tuple[datasets.Dataset, list[dict], dict[str, int], dict[str, np.ndarray]]:
    """Decode every item of `scan` into one Arrow table, streaming (memory bounded by a batch).

    Returns the good records (status columns removed), the skipped `{"file", "reason"}` list,
    the excluded counts per category, and numpy columns `split`, `label`, `valence`, `arousal`
    aligned with the good records (so callers never re-read the table for them).
    """
    features = prepared_features(options.class_names)
    skipped, excluded = list(scan.skipped), dict(scan.excluded)
    if not scan.items:
        empty = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        columns = {"split": np.zeros(0, dtype=object), "label": np.zeros(0, dtype=np.int64)}
        columns |= {"valence": np.zeros(0, np.float32), "arousal": np.zeros(0, np.float32)}
        return empty, skipped, excluded, columns
    per_shard = max(1, min(ITEMS_PER_SHARD, math.ceil(len(scan.items) / num_proc)))
    shards = [scan.items[i : i + per_shard] for i in range(0, len(scan.items), per_shard)]
    build_features = datasets.Features(
        {**features, **{name: datasets.Value("string") for name in STATUS_COLUMNS}}
    )
    table = datasets.Dataset.from_generator(
        _generate,
        features=build_features,
        gen_kwargs={"shards": shards, "reader": scan.reader, "options": options},
        num_proc=num_proc if num_proc > 1 and len(shards) > 1 else None,
        cache_dir=cache_dir,
        fingerprint=fingerprint(scan, options),
        split=datasets.NamedSplit("records"),
    )
    # Read the status columns with Arrow compute: only skipped rows become Python objects.
    data = table.data.table
    bad = pc.not_equal(data.column("_skip"), "")
    left_out = pc.not_equal(data.column("_excluded"), "")
    for row in data.filter(bad).select(["source", "_skip"]).to_pylist():
        skipped.append({"file": row["source"], "reason": row["_skip"]})
    for entry in pc.value_counts(data.column("_excluded").filter(left_out)).to_pylist():
        excluded[entry["values"]] = excluded.get(entry["values"], 0) + entry["counts"]
    keep = np.flatnonzero(~pc.or_(bad, left_out).to_numpy(zero_copy_only=False))
    splits = data.column("_split").take(keep).dictionary_encode().combine_chunks()
    columns = {
        "split": np.asarray(splits.dictionary.to_pylist(), dtype=object)[splits.indices.to_numpy()]
    }
    for name in ("label", "valence", "arousal"):
        columns[name] = data.column(name).to_numpy()[keep]
    good = table.select(keep).remove_columns(list(STATUS_COLUMNS))
    return good, skipped, excluded, columns


def index_csv(path: str, desc: str) -> tuple[list[str] | None, list[tuple[int, int]]]:
    """Parse the first row of a CSV and list `(row number, byte offset)` of every non-blank row.

    Row numbers are 1-based line numbers (a header, when present, is row 1), as editors and
    spreadsheets show them. Only offsets are kept, so memory does not grow with the row width.
    """
    rows, first, offset = [], None, 0
    with open(path, "rb") as f, tqdm(desc=desc, unit=" rows") as bar:
        for row_number, line in enumerate(f, start=1):
            start, offset = offset, offset + len(line)
            if row_number == 1 and line.startswith(codecs.BOM_UTF8):
                start, line = start + len(codecs.BOM_UTF8), line[len(codecs.BOM_UTF8) :]
            if not line.strip():
                continue
            if first is None:
                first = next(csv.reader([line.decode("utf-8", errors="replace")]))
            rows.append((row_number, start))
            bar.update(1)
    return first, rows


def read_csv_row(path: str, offset: int) -> list[str]:
    """The fields of the CSV row starting at byte `offset` (rows span one line)."""
    with open(path, "rb") as f:
        f.seek(offset)
        line = f.readline().decode("utf-8", errors="replace")
    return next(csv.reader([line]))
