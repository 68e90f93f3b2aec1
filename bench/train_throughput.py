"""Training throughput per model kind, and the data pipeline's throughput alone, on this machine.

    .venv/bin/python bench/train_throughput.py                                # generated images
    .venv/bin/python bench/train_throughput.py --data /tmp/fer2013_prepared   # a prepared folder

For each kind (default-size model, the image size its FER2013 CPU config uses) it times
optimizer steps (forward + backward + AdamW, batch `--batch-size`, train mode) on batches made
by the training pipeline, and separately the pipeline alone: `Dataset.with_transform` with the
train augmentation + DataLoader (batched fetch, `--workers` workers, 0 = in the training process,
as the CPU configs run) + collate. `pipeline_to_model` must stay >= 3 (the pipeline never starves
the model). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from fer_hf.models import build_model
from fer_hf.training.transforms import Augmentation, FerTransform, collate

# kind -> image size used by configs/<kind>_fer2013_cpu.yaml
IMAGE_SIZES = {"factorized": 48, "baseline": 64, "vit": 48}


def generated_dataset(count: int, size: int = 48, seed: int = 0):
    """FER2013-like records: `count` random 48x48 grayscale PNG faces with labels."""
    import io

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


def pipeline_throughput(dataset, processor, batch_size: int, batches: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(
        dataset.with_transform(FerTransform(processor, Augmentation())),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=workers,
        drop_last=True,
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and first decode are not throughput
    started = time.perf_counter()
    done = 0
    for _ in range(batches):
        batch = next(iterator)
        done += batch["pixel_values"].shape[0]
    return done / (time.perf_counter() - started)


def model_throughput(model, batches: list[dict], steps: int, warmup: int = 2) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        batch = batches[i % len(batches)]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batches[0]["pixel_values"].shape[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="a `fer-hf prepare` folder (default: generated)"
    )
    parser.add_argument("--kinds", nargs="+", default=list(IMAGE_SIZES), choices=list(IMAGE_SIZES))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15, help="timed optimizer steps per kind")
    parser.add_argument("--pipeline-batches", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (pipeline)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.data:
        from fer_hf.data import load_prepared

        dataset, source = load_prepared(args.data)["train"], os.path.abspath(args.data)
    else:
        dataset, source = (
            generated_dataset(args.batch_size * (args.pipeline_batches + 2)),
            "generated",
        )

    results = {}
    for kind in args.kinds:
        model, processor = build_model(kind, image_size=IMAGE_SIZES[kind], num_classes=7)
        pipeline = pipeline_throughput(
            dataset, processor, args.batch_size, args.pipeline_batches, args.workers
        )
        transform = FerTransform(processor, Augmentation())
        batches = [
            collate(
                dataset.select(range(i * args.batch_size, (i + 1) * args.batch_size))
                .with_transform(transform)
                .__getitems__(list(range(args.batch_size)))
            )
            for i in range(2)
        ]
        train = model_throughput(model, batches, args.steps)
        results[kind] = {
            "image_size": IMAGE_SIZES[kind],
            "num_channels": processor.num_channels,
            "params": sum(p.numel() for p in model.parameters()),
            "train_samples_per_s": round(train, 1),
            "pipeline_samples_per_s": round(pipeline, 1),
            "pipeline_to_model": round(pipeline / train, 2),
        }
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                },
                "data": source,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "models": results,
                "pipeline_at_least_3x": all(r["pipeline_to_model"] >= 3 for r in results.values()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
