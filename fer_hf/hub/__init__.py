"""Model and dataset cards rendered from run files, and Hub publishing of releases and the Space.

Uses huggingface_hub (never torch at import time); must not import fer_hf.cli.
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
