"""Model and dataset cards rendered from run files, and Hub publishing of releases and the Space.

Cards + publishing only: huggingface_hub, JSON and safetensors headers. Never imports torch,
transformers' models, fer_hf.training, export, models or cli (tests/test_layering.py checks it);
the release workflow that evaluates and exports lives above, in fer_hf/release.py.
"""

from __future__ import annotations

from .dataset_card import render_dataset_card
from .model_card import build_card_data, eval_results, render_model_card
from .publish import PublishError, assemble_model_repo, publish_model, upload_folder
from .release import Release, load_release
from .space import assemble_space_repo, publish_space

__all__ = [
    "PublishError",
    "Release",
    "assemble_model_repo",
    "assemble_space_repo",
    "build_card_data",
    "eval_results",
    "load_release",
    "publish_model",
    "publish_space",
    "render_dataset_card",
    "render_model_card",
    "upload_folder",
]
