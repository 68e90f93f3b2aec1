"""Training and evaluation: arguments, transforms, losses, `FerTrainer` (with quantization-aware
fine-tuning), `train`, `evaluate_model`.

Imports fer_hf.data, models and metrics; never export, hub or cli. Heavy modules load lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataArguments": "arguments",
    "FerTrainingArguments": "arguments",
    "ModelArguments": "arguments",
    "parse_args": "arguments",
    "Augmentation": "transforms",
    "FerTransform": "transforms",
    "collate": "transforms",
    "ClassBalancedSampler": "losses",
    "distillation_loss": "losses",
    "focal_loss": "losses",
    "symmetric_kl": "losses",
    "QuantizationSimulator": "quantization_aware",
    "FerTrainer": "trainer",
    "train": "run",
    "evaluate_model": "evaluation",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = sorted(_EXPORTS)
