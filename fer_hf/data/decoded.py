"""Decoded faces, once: a split's images as one uint8 array on disk, memory-mapped for training.

Imports only numpy, PIL and datasets (never torch or the model layers).

A prepared split stores encoded PNG/JPEG bytes; decoding them every epoch costs more than a small
model's step, and a GPU outruns any per-image decoder. `decoded_images` decodes a split once into
`<cache_dir>/<name>-<H>x<W>-<mode>.npy`, shape (N, H, W, C) uint8, in the model's colour mode and
size, converted and resized exactly as `FerImageProcessor` does (PIL `convert`, then `resize`
with the processor's filter), so the processor applied to a cached array gives what it gives on
the original image. The array is written in chunks into a memory-mapped file and read back with
`mmap_mode="r"`: nothing beyond one chunk is ever held in RAM, so an AffectNet-sized split
(~420k faces at 112 px RGB, ~16 GB) works on a 24 GB machine.

Beside each array, `<same name>.json` records its fingerprint (the split's datasets fingerprint,
row count and data files' sizes and mtimes, plus size, mode and filter) and shape. The array is
written to a temporary name and renamed only when complete, and the record is written last, so:
- a cache whose fingerprint differs from the split's (the prepared folder changed) is rebuilt;
- a truncated or resized array (file size or header shape not the recorded one) is rebuilt;
- an array without its record (an interrupted build) is rebuilt.
Each rebuild is logged with its reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

CACHE_FOLDER = "decoded"  # beside the prepared splits
CACHE_VERSION = 1
_CHUNK = 2048  # images decoded per chunk: bounds memory, not speed
_MODES = {"L": 1, "RGB": 3}


def cache_stem(name: str, size: tuple[int, int], mode: str) -> str:
    """File stem of a split's cache: `<name>-<H>x<W>-<mode>`."""
    return f"{name}-{size[0]}x{size[1]}-{mode}"


def split_fingerprint(dataset: datasets.Dataset, size: tuple[int, int], mode: str, resample):
    """A digest that changes whenever the split's content (or the decode settings) may have."""
    files = []
    for cache_file in getattr(dataset, "cache_files", None) or []:
        path = cache_file.get("filename")
        if path and os.path.exists(path):
            stat = os.stat(path)
            files.append([os.path.basename(path), stat.st_size, int(stat.st_mtime)])
    record = {
        "version": CACHE_VERSION,
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "rows": len(dataset),
        "files": files,
        "size": list(size),
        "mode": mode,
        "resample": int(resample),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _decode(image: Image.Image, size: tuple[int, int], mode: str, resample) -> np.ndarray:
    """One image as the processor sees it before rescaling: (H, W, C) uint8."""
    image = image.convert(mode)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), resample=resample)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _stale_reason(array_path: Path, record_path: Path, fingerprint: str, shape) -> str | None:
    """Why the cache at `array_path` cannot be used, or None when it can."""
    if not array_path.is_file():
        return "no cache yet"
    if not record_path.is_file():
        return "its record is missing (an interrupted build)"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        return f"its record is unreadable ({err})"
    if record.get("fingerprint") != fingerprint:
        return "the split changed since it was built"
    if (
        list(record.get("shape", [])) != list(shape)
        or record.get("nbytes") != array_path.stat().st_size
    ):
        return "the array is truncated or of another shape"
    try:
        header = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError) as err:
        return f"the array is unreadable ({err})"
    if header.shape != tuple(shape) or header.dtype != np.uint8:
        return "the array header does not match its record"
    return None


def decoded_images(
    dataset: datasets.Dataset,
    cache_dir: str | os.PathLike,
    name: str,
    size: tuple[int, int],
    mode: str,
    resample=Image.Resampling.BILINEAR,
    progress: bool = True,
) -> np.memmap:
    """The `image` column of `dataset` as a read-only (N, H, W, C) uint8 memmap, decoded once.

    Args:
        dataset: a split with an `image` column (`datasets.Image`).
        cache_dir: where the cache lives (created); `prepared/<x>/decoded` for a prepared folder.
        name: the split's name in the cache file name.
        size: (height, width) of the cached images: the model's input size.
        mode: "L" (1 channel) or "RGB" (3 channels): the model's colour mode.
        resample: PIL filter for images of another size (the processor's `resample`).
        progress: show a progress bar while decoding.
    """
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {sorted(_MODES)}, got {mode!r}.")
    if len(dataset) == 0:
        raise ValueError(f"Split {name!r} is empty; nothing to decode.")
    size = (int(size[0]), int(size[1]))
    cache_dir = Path(cache_dir)
    stem = cache_stem(name, size, mode)
    array_path, record_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    shape = (len(dataset), size[0], size[1], _MODES[mode])
    fingerprint = split_fingerprint(dataset, size, mode, resample)
    reason = _stale_reason(array_path, record_path, fingerprint, shape)
    if reason is None:
        return np.load(array_path, mmap_mode="r")
    logger.info("Decoding %s (%d images, %s) into %s: %s.", name, shape[0], stem, cache_dir, reason)
    cache_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    temporary = cache_dir / f".{stem}.{os.getpid()}.npy.tmp"
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
    try:
        from tqdm.auto import tqdm

        images = dataset.select_columns(["image"])
        bar = tqdm(total=shape[0], desc=f"Decoding {name}", unit="img", disable=not progress)
        for start in range(0, shape[0], _CHUNK):
            chunk = images[start : start + _CHUNK]["image"]
            for offset, image in enumerate(chunk):
                array[start + offset] = _decode(image, size, mode, resample)
            bar.update(len(chunk))
        bar.close()
        array.flush()
        del array
        os.replace(temporary, array_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    record = {
        "fingerprint": fingerprint,
        "shape": list(shape),
        "nbytes": array_path.stat().st_size,
        "split": name,
        "size": list(size),
        "mode": mode,
    }
    tmp_record = record_path.with_suffix(".json.tmp")
    tmp_record.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_record, record_path)
    return np.load(array_path, mmap_mode="r")


__all__ = ["CACHE_FOLDER", "cache_stem", "decoded_images", "split_fingerprint"]
