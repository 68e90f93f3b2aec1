"""The fast training data path: decoded uint8 faces -> batches, augmented on the model's device.

Imports fer_hf.data (the decode cache) and training siblings; never export, hub or cli.

- `DecodedFaces`: a map-style dataset over a decoded split (`fer_hf.data.decoded`): item i is
  just the row number; labels and valence/arousal are small arrays held in memory.
- `UInt8Collator`: gathers a batch's rows from the memory-mapped array in one sorted read and
  returns `images` (B, H, W, C) uint8 + targets. It opens the array lazily in each process, so
  DataLoader workers (GPU runs) share the page cache instead of pickling the array.
- `FerTrainer` turns `images` into `pixel_values` after moving the batch to the model's device:
  `BatchAugmenter` for training, `normalize_uint8` (the processor's own arithmetic on images the
  cache already converted and resized as the processor does) for evaluation. A uint8 batch is
  4x smaller than a float one to move to a GPU, and the augmentation runs there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data.decoded import CACHE_FOLDER, cache_stem, decoded_images

logger = logging.getLogger(__name__)


def _column(dataset, name: str) -> np.ndarray:
    if name not in dataset.column_names:
        return np.full(len(dataset), np.nan, dtype=np.float32)
    return np.asarray(dataset[name], dtype=np.float32)


class DecodedFaces(torch.utils.data.Dataset):
    """A view of a decoded split: item i is row `rows[i]` of the cache's `.npy` file at
    `array_path`, with the targets of record i of `dataset` (the view, in the same order)."""

    def __init__(self, array_path: str | Path, dataset, rows: np.ndarray | None = None):
        self.array_path = str(array_path)
        self.rows = np.arange(len(dataset)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) != len(dataset):
            raise ValueError(f"{len(self.rows)} rows for a view of {len(dataset)} records.")
        self.labels = np.asarray(dataset["label"], dtype=np.int64)
        self.valence = _column(dataset, "valence")
        self.arousal = _column(dataset, "arousal")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {
            "row": int(self.rows[index]),
            "labels": self.labels[index],
            "valence": self.valence[index],
            "arousal": self.arousal[index],
        }


class UInt8Collator:
    """Rows of a `DecodedFaces` -> `images` (B, H, W, C) uint8 tensor + targets."""

    def __init__(self, array_path: str | Path):
        self.array_path = str(array_path)
        self._array = None

    def __getstate__(self):  # DataLoader workers reopen the memmap instead of copying it
        return {"array_path": self.array_path, "_array": None}

    def _images(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = np.fromiter((e["row"] for e in examples), dtype=np.int64, count=len(examples))
        order = np.argsort(rows, kind="stable")
        gathered = np.empty((len(rows), *self._images().shape[1:]), dtype=np.uint8)
        gathered[order] = self._images()[rows[order]]  # one sorted read of the memmap
        return {
            "images": torch.from_numpy(gathered),
            "labels": torch.as_tensor(np.array([e["labels"] for e in examples]), dtype=torch.long),
            "valence": torch.as_tensor(
                np.array([e["valence"] for e in examples]), dtype=torch.float32
            ),
            "arousal": torch.as_tensor(
                np.array([e["arousal"] for e in examples]), dtype=torch.float32
            ),
        }


def processor_mode(processor) -> str:
    """The PIL mode the processor converts images to: "L" or "RGB"."""
    return "L" if processor.do_grayscale or processor.num_channels == 1 else "RGB"


def decoded_split(
    base, view, rows: np.ndarray, cache_dir: str | Path, name: str, processor
) -> DecodedFaces:
    """`DecodedFaces` over `view` (records `rows` of split `base`), with `base` decoded once at
    the processor's size and colour mode into `cache_dir`."""
    size = (processor.size["height"], processor.size["width"])
    mode = processor_mode(processor)
    decoded_images(base, cache_dir, name, size, mode, resample=processor.resample)
    return DecodedFaces(Path(cache_dir) / f"{cache_stem(name, size, mode)}.npy", view, rows)


def cache_dir_for(data_args, output_dir: str) -> Path:
    """Where a run's decoded splits live: beside a prepared folder's splits, or in the output
    folder for a dataset prepared on the fly."""
    if data_args.source == "prepared":
        return Path(data_args.dataset).expanduser() / CACHE_FOLDER
    return Path(output_dir) / CACHE_FOLDER


__all__ = [
    "DecodedFaces",
    "UInt8Collator",
    "cache_dir_for",
    "decoded_split",
    "processor_mode",
]
