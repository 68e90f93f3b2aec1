"""Load a saved fer-hf model folder (model + image processor): the one loader every layer calls.

Never copied into saved model folders; relative imports only, like the rest of fer_hf.models.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig

from .builders import register


def _folder(path: str | os.PathLike) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"Model folder {path} does not exist or has no config.json; pass a folder written "
            "by `train.py` or `fer-hf init`."
        )
    return folder


def load_processor(path: str | os.PathLike):
    """The image processor saved in a model folder (the slow, PIL-based `FerImageProcessor` for
    fer-hf folders: the fast one resizes differently), with fer-hf's classes registered."""
    register()
    return AutoImageProcessor.from_pretrained(Path(path).expanduser(), use_fast=False)


def load_model_folder(path: str | os.PathLike):
    """(model in eval mode, image processor) of a saved fer-hf model folder.

    Registers fer-hf's classes first, so the folder loads without `trust_remote_code`. A path
    without config.json is a `FileNotFoundError`.
    """
    folder = _folder(path)
    register()
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    return model, load_processor(folder)


def label_names(config: PretrainedConfig) -> list[str]:
    """The class names of a model config, in logit order."""
    return [config.id2label[i] for i in range(config.num_labels)]


__all__ = ["label_names", "load_model_folder", "load_processor"]
