"""Training throughput per model kind: the per-sample reference path vs the fast default path.

    .venv/bin/python bench/train_throughput.py --compare                          # generated faces
    .venv/bin/python bench/train_throughput.py --compare --data prepared/fer2013 --threads 2
    .venv/bin/python bench/train_throughput.py --compare --kinds factorized --compile

Each kind is built as its FER2013 CPU config builds it (configs/<kind>_fer2013_cpu.yaml: image
size and model overrides). In one process, on the same initial weights and batch size, it times
end-to-end training steps (data + forward + backward + AdamW step) of two paths:
- "reference": the per-sample path (`--data_pipeline per_sample`): `Dataset.with_transform`
  decodes and augments image by image in the DataLoader, fp32, NCHW;
- "fast": what `train.py` runs by default: the decoded uint8 cache (`fer_hf.data.decoded`), one
  sorted memmap read per batch, `BatchAugmenter` on the whole batch, and the precision and memory
  layout `--precision auto --channels_last auto` picks for the kind on this machine.
`speedup` = fast / reference. `pipeline_to_model` (fast path) = the data path alone (loader +
batched augmentation) vs the model step alone: >= 3 means the data never starves the model.
`--compile` also times `torch.compile` on the fast path, compile time included. The reference
and fast runs alternate for `--rounds` rounds and the best round of each counts (a shared machine
only ever slows a run down). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fer_hf.artifacts import machine_info
from fer_hf.data.decoded import CACHE_FOLDER
from fer_hf.models import MODEL_KINDS, build_model
from fer_hf.training.arguments import parse_args
from fer_hf.training.augment import BatchAugmenter
from fer_hf.training.batches import UInt8Collator, decoded_split
from fer_hf.training.precision import Precision, apply_precision, cpu_summary, resolve_precision
from fer_hf.training.transforms import Augmentation, FerTransform, collate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def generated_dataset(count: int, size: int = 48, seed: int = 0):
    """FER2013-like records: `count` random 48x48 grayscale PNG faces with labels."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buffer, "PNG")
        images.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(num_classes=7),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "image": images,
            "label": rng.integers(0, 7, count).tolist(),
            "valence": [float("nan")] * count,
            "arousal": [float("nan")] * count,
        },
        features=features,
    )


def config_model(kind: str):
    """(model, processor, image size, overrides) as configs/<kind>_fer2013_cpu.yaml builds them."""
    model_args, _, _ = parse_args([str(CONFIGS / f"{kind}_fer2013_cpu.yaml")])
    overrides = dict(model_args.model_overrides or {})
    model, processor = build_model(
        kind, image_size=model_args.image_size, num_classes=7, **overrides
    )
    return model, processor, model.config.image_size, overrides


class Path_:
    """One training path: a loader, a batch -> inputs function, a model and its precision."""

    def __init__(self, model, loader, to_inputs, precision: Precision):
        self.model = apply_precision(model, precision)
        self.loader = loader
        self.to_inputs = to_inputs
        self.precision = precision
        self.bf16 = precision.bf16
        self.channels_last = precision.channels_last
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self._iterator = None

    def next_batch(self) -> dict:
        if self._iterator is None:
            self._iterator = iter(self.loader)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.loader)
            return next(self._iterator)

    def inputs(self, batch: dict) -> dict:
        inputs = self.to_inputs(batch)
        if self.channels_last:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(
                memory_format=torch.channels_last
            )
        return inputs

    def step(self, inputs: dict) -> None:
        self.model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**inputs).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def end_to_end(self, steps: int, batch_size: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            self.step(self.inputs(self.next_batch()))
        return steps * batch_size / (time.perf_counter() - started)

    def data_only(self, steps: int, batch_size: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            self.inputs(self.next_batch())
        return steps * batch_size / (time.perf_counter() - started)

    def model_only(self, steps: int, batch_size: int) -> float:
        inputs = self.inputs(self.next_batch())
        started = time.perf_counter()
        for _ in range(steps):
            self.step(inputs)
        return steps * batch_size / (time.perf_counter() - started)


def loader(dataset, collate_fn, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_fn,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def compare_kind(kind, dataset, cache_dir, args) -> dict:
    torch.manual_seed(0)
    model, processor, image_size, overrides = config_model(kind)
    augmentation = Augmentation()
    reference = Path_(
        copy.deepcopy(model),
        loader(
            dataset.with_transform(FerTransform(processor, augmentation)),
            collate,
            args.batch_size,
            args.workers,
        ),
        lambda batch: {"pixel_values": batch["pixel_values"], "labels": batch["labels"]},
        Precision(bf16=False, channels_last=False, reason="the reference path: fp32, contiguous"),
    )
    faces = decoded_split(dataset, dataset, None, cache_dir, "train", processor)
    augmenter = BatchAugmenter(processor, augmentation)
    factorization = getattr(model.config.backbone_config, "factorization", None)
    precision = resolve_precision(kind, "auto", "auto", "cpu", factorization)
    fast = Path_(
        copy.deepcopy(model),
        loader(faces, UInt8Collator(faces.array_path), args.batch_size, args.workers),
        lambda batch: {"pixel_values": augmenter(batch["images"]), "labels": batch["labels"]},
        precision,
    )
    for path in (reference, fast):  # warm-up: first batches, oneDNN kernel selection
        path.end_to_end(args.warmup, args.batch_size)
    best = {"reference": 0.0, "fast": 0.0}
    for _ in range(args.rounds):
        best["reference"] = max(
            best["reference"], reference.end_to_end(args.steps, args.batch_size)
        )
        best["fast"] = max(best["fast"], fast.end_to_end(args.steps, args.batch_size))
    data_rate = max(fast.data_only(args.steps * 2, args.batch_size) for _ in range(args.rounds))
    model_rate = max(fast.model_only(args.steps, args.batch_size) for _ in range(args.rounds))
    result = {
        "image_size": image_size,
        "model_overrides": overrides,
        "params": sum(p.numel() for p in model.parameters()),
        "reference": {
            "images_per_s": round(best["reference"], 1),
            "dtype": "float32",
            "memory_format": "contiguous",
            "data": "per-sample decode + augmentation in the DataLoader",
        },
        "fast": {
            "images_per_s": round(best["fast"], 1),
            "dtype": precision.dtype,
            "memory_format": precision.memory_format,
            "precision_reason": precision.reason,
            "attention": precision.attention or "sdpa",
            "data": "decoded uint8 memmap + whole-batch augmentation",
            "data_images_per_s": round(data_rate, 1),
            "model_images_per_s": round(model_rate, 1),
        },
        "speedup": round(best["fast"] / best["reference"], 2),
        "pipeline_to_model": round(data_rate / model_rate, 2),
    }
    if args.compile:
        result["compiled"] = compiled_figures(fast, args, best["fast"])
    return result


def compiled_figures(fast: Path_, args, eager_rate: float) -> dict:
    """torch.compile on the fast path: compile time, steady images/s, and whether it pays off
    within `--compile-horizon` training steps (a run's length) including the compile time."""
    compiled = Path_(
        torch.compile(copy.deepcopy(fast.model)),
        fast.loader,
        fast.to_inputs,
        fast.precision,
    )
    started = time.perf_counter()
    compiled.end_to_end(2, args.batch_size)  # compiles forward and backward
    compile_s = time.perf_counter() - started
    rate = max(compiled.end_to_end(args.steps, args.batch_size) for _ in range(args.rounds))
    images = args.compile_horizon * args.batch_size
    eager_s, compiled_s = images / eager_rate, compile_s + images / rate
    return {
        "compile_s": round(compile_s, 1),
        "images_per_s": round(rate, 1),
        "speedup_vs_fast": round(rate / eager_rate, 2),
        "horizon_steps": args.compile_horizon,
        "wins_including_compile": compiled_s < eager_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare",
        action="store_true",
        help="time the reference and the fast path side by side (the only mode; kept explicit)",
    )
    parser.add_argument(
        "--data", default=None, help="a `fer-hf prepare` folder (default: generated)"
    )
    parser.add_argument("--kinds", nargs="+", default=list(MODEL_KINDS), choices=list(MODEL_KINDS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per round and path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per path first")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best counts")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both paths)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--compile-horizon", type=int, default=5000, help="steps of a run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="fer-hf-bench-") as scratch:
        if args.data:
            from fer_hf.data import load_prepared

            dataset, source = load_prepared(args.data)["train"], os.path.abspath(args.data)
            cache_dir = Path(args.data) / CACHE_FOLDER
        else:
            count = args.batch_size * (args.steps * 2 + args.warmup + 4)
            dataset, source = generated_dataset(count), "generated 48x48 gray PNG faces"
            cache_dir = Path(scratch) / CACHE_FOLDER
        results = {kind: compare_kind(kind, dataset, cache_dir, args) for kind in args.kinds}
    print(
        json.dumps(
            {
                "machine": machine_info(cpu_summary()),
                "data": source,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "kinds": results,
                "pipeline_at_least_3x": all(r["pipeline_to_model"] >= 3 for r in results.values()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
