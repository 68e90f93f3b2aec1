"""Precision and memory layout per model kind, chosen by measurement (bench/train_throughput.py).

Imports only torch; never fer_hf.data, export, hub or cli.

Measured on a 2-core Xeon with AMX and an EPYC with AVX512-BF16 (README, "Training speed"): bf16
autocast + channels-last speeds up the ResNet 2.2-2.8x and the ViT 1.2-1.7x, but slows the
factorized CNN with depthwise convolutions (they have no fast bf16 kernel), which gains 1.5x from
channels-last alone; a factorized CNN of dense convolutions (`factorization` "spatial" or "none")
trains 1.7x faster in bf16 (535 vs 307 images/s, one EPYC thread, 40 px crops). On a CPU without
native bf16, bf16 is emulated and slower than fp32. On a CPU, bf16 attention through PyTorch's
fused SDPA kernel is slow for the ViT's short sequences (its backward took 44% of a training step,
profiled on the Xeon with AMX): a bf16 ViT trains with transformers' eager attention there, 1.6x
faster; fp32 keeps SDPA, which is faster in fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# What `auto` picks per kind where the device has native bf16.
BF16_KINDS: frozenset[str] = frozenset({"baseline", "vit"})
CHANNELS_LAST_KINDS: frozenset[str] = frozenset({"baseline", "factorized"})
# Factorized networks without depthwise convolutions: dense, so bf16 pays off as for the ResNet.
BF16_FACTORIZATIONS: frozenset[str] = frozenset({"none", "spatial"})
# Kinds that train with eager attention under bf16 on a CPU (see the module docstring).
EAGER_ATTENTION_KINDS: frozenset[str] = frozenset({"vit"})


def cpu_capability() -> str:
    """The SIMD level torch dispatches to on this CPU ("AVX512", "AVX2", "DEFAULT", ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # very old torch or exotic builds
        return "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (oneDNN's fast bf16 kernels); elsewhere bf16 is emulated and slow."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return cpu_capability() in ("AVX512_BF16", "AMX")


def cpu_summary() -> dict:
    """The CPU a figure was measured on: model name, SIMD level, native bf16, AMX, threads."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os
    import platform

    flags = cpu_flags()
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "native_bf16": native_bf16("cpu"),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


@dataclass(frozen=True)
class Precision:
    """What a run trains with: bf16 autocast or fp32, channels-last or not, and why."""

    bf16: bool
    channels_last: bool
    reason: str
    attention: str | None = None  # an `attn_implementation` to train with; None keeps the model's

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"


def resolve_precision(
    kind: str,
    precision: str,
    channels_last: str,
    device: torch.device | str = "cpu",
    factorization: str | None = None,
) -> Precision:
    """Resolve `--precision auto|fp32|bf16` and `--channels_last auto|true|false` for `kind`.

    `auto` precision is bf16 for `BF16_KINDS` (and a factorized network whose `factorization` is
    in `BF16_FACTORIZATIONS`) on a device with native bf16 and fp32 otherwise; a forced bf16 on
    a device without native bf16 is kept (the user asked) but logged as slow.
    """
    native = native_bf16(device)
    dense_factorized = kind == "factorized" and factorization in BF16_FACTORIZATIONS
    if precision == "bf16":
        bf16, reason = True, "bf16 requested"
        if not native:
            logger.warning(
                "bf16 requested on %s without native bf16 (CPU capability %s): it is emulated "
                "and usually slower than fp32.",
                device,
                cpu_capability(),
            )
    elif precision == "fp32":
        bf16, reason = False, "fp32 requested"
    elif kind not in BF16_KINDS and not dense_factorized:
        bf16, reason = False, f"fp32: bf16 measured slower for the {kind} model"
    elif not native:
        bf16, reason = False, "fp32: no native bf16 on this device"
        logger.info(
            "Training in fp32: %s has no native bf16 (CPU capability %s; bf16 needs AVX512-BF16, "
            "AMX or a bf16 GPU).",
            device,
            cpu_capability(),
        )
    else:
        bf16, reason = True, "bf16: native on this device"
    layout = kind in CHANNELS_LAST_KINDS if channels_last == "auto" else channels_last == "true"
    on_cpu = torch.device(device).type == "cpu"
    attention = "eager" if kind in EAGER_ATTENTION_KINDS and bf16 and on_cpu else None
    return Precision(bf16=bf16, channels_last=layout, reason=reason, attention=attention)


def apply_precision(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """Put `model` in `precision`'s memory layout and attention implementation (in place; also
    returned). The attention choice is not saved: `config.json` never records it."""
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if precision.attention is not None:
        model.set_attn_implementation(precision.attention)
    return model


__all__ = [
    "BF16_FACTORIZATIONS",
    "BF16_KINDS",
    "CHANNELS_LAST_KINDS",
    "EAGER_ATTENTION_KINDS",
    "Precision",
    "apply_precision",
    "cpu_capability",
    "cpu_flags",
    "cpu_summary",
    "native_bf16",
    "resolve_precision",
]
