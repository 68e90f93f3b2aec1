"""CPU benchmark of the three released model kinds and the factorization ablation, at one size.

    .venv/bin/python bench/models.py [--image-size 48] [--threads N] [--rounds 15]

Prints one JSON document: {"image_size", "threads", "machine", "models": {name: {params, mflops,
latency_ms_b1, throughput_b64, ...}}, "factorized_vs_baseline": {...}}. FLOPs are counted per
image with torch.utils.flop_counter (FLOPs = 2 x MACs). Timings are medians in eval mode under
no_grad; the models are timed interleaved, round by round, so a busy machine slows them alike.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from fer_hf.artifacts import machine_info
from fer_hf.models import build_model
from fer_hf.training.precision import cpu_summary

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def config_overrides(name: str) -> dict:
    """The `model_overrides` of configs/<name>.yaml: the released models are built like this."""
    from fer_hf.training.arguments import parse_args

    model_args, _, _ = parse_args([os.path.join(CONFIGS, f"{name}.yaml")])
    return dict(model_args.model_overrides or {})


# name -> (kind, overrides). The first three are built as the FER2013 release configs build them;
# "factorized_default" is the backbone's default config (depthwise), and the factorization
# ablation varies it.
MODELS = {
    "baseline": ("baseline", config_overrides("baseline_fer2013_cpu")),
    "vit": ("vit", config_overrides("vit_fer2013_cpu")),
    "factorized": ("factorized", config_overrides("factorized_fer2013_spatial")),
    "factorized_default": ("factorized", {}),
    "factorized_none": ("factorized", {"factorization": "none"}),
    "factorized_spatial": ("factorized", {"factorization": "spatial"}),
    "factorized_both": ("factorized", {"factorization": "both"}),
}


def count_mflops(model: torch.nn.Module, example: torch.Tensor) -> float:
    # The math SDPA backend runs attention as matmuls, which the counter sees (the fused CPU
    # kernel is not in its formula table).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(example)
    return counter.get_total_flops() / 1e6


def timed(model: torch.nn.Module, batch: torch.Tensor) -> float:
    start = time.perf_counter()
    model(batch)
    return time.perf_counter() - start


def describe(model) -> str:
    backbone = model.config.backbone_config
    if backbone.model_type == "resnet":
        return f"ResNet ({backbone.layer_type}, depths {backbone.depths})"
    if backbone.model_type == "vit":
        return (
            f"ViT (hidden {backbone.hidden_size}, {backbone.num_hidden_layers} layers, "
            f"patch {backbone.patch_size})"
        )
    return f"factorized ({backbone.factorization}, widths {backbone.hidden_sizes})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=48, help="input side (default: 48)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--b1-calls", type=int, default=10, help="batch-1 calls per round")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = args.image_size

    models, inputs, results = {}, {}, {}
    for name, (kind, overrides) in MODELS.items():
        model, _ = build_model(kind, image_size=size, **overrides)
        model.eval()
        channels = model.config.num_channels
        models[name] = model
        inputs[name] = (torch.randn(1, channels, size, size), torch.randn(64, channels, size, size))
        results[name] = {
            "description": describe(model),
            "num_channels": channels,
            "params": sum(p.numel() for p in model.parameters()),
            "mflops": round(count_mflops(model, inputs[name][0]), 2),
        }

    b1 = {name: [] for name in models}
    b64 = {name: [] for name in models}
    with torch.no_grad():
        for name, model in models.items():  # warm-up
            for batch in inputs[name]:
                model(batch)
        for _ in tqdm(range(args.rounds), desc="timing rounds", file=sys.stderr):
            for name, model in models.items():
                one, many = inputs[name]
                b1[name] += [timed(model, one) for _ in range(args.b1_calls)]
                b64[name].append(timed(model, many))
    for name in models:
        results[name]["latency_ms_b1"] = round(statistics.median(b1[name]) * 1e3, 3)
        results[name]["throughput_b64"] = round(64 / statistics.median(b64[name]), 1)

    base, ours = results["baseline"], results["factorized"]
    print(
        json.dumps(
            {
                "image_size": size,
                "threads": torch.get_num_threads(),
                "machine": machine_info(
                    cpu_summary(), processor=platform.processor() or platform.machine()
                ),
                "rounds": args.rounds,
                "models": results,
                "factorized_vs_baseline": {
                    "flops_fraction": round(ours["mflops"] / base["mflops"], 4),
                    "throughput_b64_ratio": round(
                        ours["throughput_b64"] / base["throughput_b64"], 2
                    ),
                    "latency_b1_ratio": round(base["latency_ms_b1"] / ours["latency_ms_b1"], 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
