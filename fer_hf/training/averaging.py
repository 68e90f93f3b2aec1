"""`fer-hf average`: one model whose weights are the average of several runs of one architecture.

Averaging the weights of runs that share an ancestry (the ends of successive warm-restart cycles,
the checkpoints of one run, fine-tunes of one release) lands in a flatter, better-generalising
point than any of them: stochastic weight averaging (Izmailov et al. 2018, arXiv 1803.05407) and
model soups (Wortsman et al. 2022, arXiv 2203.05482). The result is one model of the same size
and speed, unlike an ensemble.

Batch-norm running statistics do not average: the mean of several models' statistics is not the
statistics of the averaged model's activations, and can cost many points. Models with batch norm
(the ResNet and the factorized CNN) therefore get theirs recomputed from training images
(`torch.optim.swa_utils.update_bn`), and so does a ViT with the convolutional tokeniser (the
releases'); one with a plain patch projection has no batch norm and needs no data.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..artifacts import (
    SUMMARY_FILE,
    SUMMARY_RUN_KEYS,
    is_trainer_checkpoint,
    overlaps,
    read_json,
    write_json,
)
from ..data import load_eval_split
from ..models import label_names, load_model_folder
from .data import seeded_sample
from .transforms import FerTransform, collate

logger = logging.getLogger(__name__)

# Training images whose activations set the averaged model's batch-norm statistics: 100 batches
# of 64, a standard error of the per-channel means well under their spread between models.
BN_IMAGES = 6400


def _same_architecture(first: Path, model, folder: Path, other) -> None:
    if type(model) is not type(other) or (
        model.config.to_dict().get("backbone_config")
        != other.config.to_dict().get("backbone_config")
    ):
        raise ValueError(
            f"{folder} is not the same architecture as {first} (model class or backbone config "
            "differ); only runs of one architecture can be averaged."
        )
    if label_names(model.config) != label_names(other.config):
        raise ValueError(
            f"{folder} predicts {label_names(other.config)} but {first} predicts "
            f"{label_names(model.config)}; average models of one label schema."
        )
    mine, theirs = model.state_dict(), other.state_dict()
    for name, tensor in mine.items():
        if name not in theirs or theirs[name].shape != tensor.shape:
            raise ValueError(
                f"{folder} has no tensor {name} of shape {tuple(tensor.shape)} (as {first} has); "
                "only runs of one architecture can be averaged."
            )
    extra = sorted(set(theirs) - set(mine))
    if extra:
        raise ValueError(f"{folder} has tensors {first} lacks ({extra[:3]}); not averageable.")


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    weights = list(weights)
    if len(weights) != count:
        raise ValueError(f"--weights has {len(weights)} values for {count} model folders.")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"--weights must be finite numbers >= 0, got {w!r}.")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("--weights must not all be 0.")
    return [float(w) / total for w in weights]


def _check_output(output: Path, folders: list[Path], data: Path | None, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is a file; pass a folder.")
    for path, what in [*((f, "model folder") for f in folders), (data, "--data")]:
        if path is None:
            continue
        if overlaps(output, path):
            raise ValueError(
                f"--output {output} overlaps the {what} {path}; write the average to a new "
                "folder so no input is modified."
            )
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(
            f"--output {output} already exists and is not empty; pass --overwrite to replace it."
        )


def _has_batch_norm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recompute_batch_norm(
    model, processor, data: str | os.PathLike, split: str = "train", num_images: int = BN_IMAGES,
    batch_size: int = 64, seed: int = 0,
) -> int:  # fmt: skip
    """Reset `model`'s batch-norm running statistics and set them to the mean over up to
    `num_images` images of `split` of `data` (a seeded sample), preprocessed by `processor` as
    at inference (no augmentation). Returns the number of images used; the model is left in
    eval mode."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"--bn-images must be a positive int, got {num_images!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive int, got {batch_size!r}.")
    dataset, _ = load_eval_split(data, split, label_names(model.config))
    if len(dataset) == 0:
        raise ValueError(f"The {split!r} split of {data} is empty; no images for batch norm.")
    sample = seeded_sample(dataset, num_images, seed)
    loader = torch.utils.data.DataLoader(
        sample.with_transform(FerTransform(processor)), batch_size=batch_size, collate_fn=collate
    )
    inputs = (
        batch["pixel_values"].to(model.device, model.dtype)
        for batch in tqdm(loader, desc="Batch-norm statistics", unit="batch")
    )
    # update_bn weights each batch equally (momentum None): a cumulative mean over batches.
    torch.optim.swa_utils.update_bn(inputs, model)
    model.eval()
    return len(sample)


def _summary_of(folder: Path) -> Path | None:
    """The training summary describing `folder`: its own, or for a Trainer `checkpoint-N` folder
    (which has none) its run folder's, which `train.py` writes when the run starts."""
    own = folder / SUMMARY_FILE
    if own.is_file():
        return own
    parent = folder.parent / SUMMARY_FILE
    if is_trainer_checkpoint(folder) and parent.is_file():
        return parent
    return None


def average_models(
    model_dirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    weights: Sequence[float] | None = None,
    data: str | os.PathLike | None = None,
    split: str = "train",
    bn_images: int = BN_IMAGES,
    batch_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Write to `output` a model folder whose weights are the (weighted) mean of `model_dirs`'.

    All folders must hold the same architecture and label schema; the first one's config,
    processor and code files are kept. Floating-point tensors are averaged in float32 and saved
    as float32 (`fer-hf release` stores them in float16); integer buffers (batch-norm batch
    counters) are the first folder's. A model with batch norm needs `data`: its statistics are
    recomputed on `bn_images` images of `split` (see `recompute_batch_norm`). A single folder of
    a model with batch norm is accepted: its weights are copied in float32 and its statistics
    recomputed (e.g. for a model fine-tuned at another crop size). The first folder's
    `train_summary.json`, when it has one, is carried over (dataset, machine, hyperparameters of
    the last cycle) with its per-run fields (best checkpoint, metrics, run time) removed and a
    `weight_average` record of the sources added, so `fer-hf release` can release the average.
    `command` (the command line) is recorded there. Nothing in `model_dirs` or `data` is
    modified. Returns that record.
    """
    folders = [Path(p).expanduser() for p in model_dirs]
    if not folders:
        raise ValueError("Pass at least one model folder.")
    if len({f.resolve() for f in folders}) != len(folders):
        raise ValueError("A model folder is listed twice; use --weights to weight one more.")
    shares = _check_weights(weights, len(folders))
    output = Path(output).expanduser()
    data_path = None if data is None else Path(data).expanduser()
    _check_output(output, folders, data_path, overwrite)

    model, processor = load_model_folder(folders[0])
    model = model.float()
    if len(folders) == 1 and not _has_batch_norm(model):
        raise ValueError(
            f"{folders[0]} has no batch-norm layers, so one folder alone has nothing to "
            "recompute; pass at least two model folders to average."
        )
    total = {
        name: t.float() * shares[0]
        for name, t in model.state_dict().items()
        if t.is_floating_point()
    }
    for folder, share in zip(folders[1:], shares[1:], strict=True):
        other, other_processor = load_model_folder(folder)
        _same_architecture(folders[0], model, folder, other)
        if other_processor.to_dict() != processor.to_dict():
            raise ValueError(
                f"{folder}'s image processor differs from {folders[0]}'s; the runs were trained "
                "on differently preprocessed faces and cannot be averaged."
            )
        state = other.state_dict()
        for name in total:
            total[name] += state[name].float() * share
        del other
    model.load_state_dict(total, strict=False)  # integer buffers stay the first folder's

    bn = None
    if _has_batch_norm(model):
        if data_path is None:
            raise ValueError(
                f"{folders[0]} has batch-norm layers, whose statistics must be recomputed for "
                "averaged weights; pass --data (its training split is used)."
            )
        used = recompute_batch_norm(
            model, processor, data_path, split=split, num_images=bn_images,
            batch_size=batch_size, seed=seed,
        )  # fmt: skip
        bn = {"data": str(data_path.resolve()), "split": split, "images": used, "seed": seed}
    record = {
        "sources": [str(f.resolve()) for f in folders],
        "weights": shares,
        "batch_norm_recomputed": bn,
        "command": command,
    }

    if output.exists():
        shutil.rmtree(output)
    model.save_pretrained(output, safe_serialization=True)
    processor.save_pretrained(output)
    summary_path = _summary_of(folders[0])
    summary = read_json(summary_path, "a training summary") if summary_path is not None else {}
    for key in SUMMARY_RUN_KEYS:
        summary.pop(key, None)
    record["summary_from"] = None if summary_path is None else str(summary_path.resolve())
    summary["weight_average"] = record
    write_json(output / SUMMARY_FILE, summary)
    return record


__all__ = ["BN_IMAGES", "average_models", "recompute_batch_norm"]
