"""Declarative Optimum `OnnxConfig`s for the fer-hf model types.

Must not import fer_hf.data, training, hub, inference or cli.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from optimum.exporters.onnx.config import VisionOnnxConfig
from optimum.utils import NormalizedVisionConfig
from transformers import PretrainedConfig


class FerOnnxConfig(VisionOnnxConfig):
    """`FerForExpressionRecognition` (any backbone) for the "image-classification" task.

    Input `pixel_values` (batch, channels, height, width) with a dynamic batch axis; channels and
    side come from the config, the side being the processor's output (`onnx_config_for`'s
    `input_size`: the centre crop of a crop-trained model), so fixed spatial axes let ONNX
    Runtime fold shapes. Outputs `logits` and, when the model has the head,
    `valence_arousal` (batch, 2).
    """

    NORMALIZED_CONFIG_CLASS = NormalizedVisionConfig  # reads `num_channels` and `image_size`
    DEFAULT_ONNX_OPSET = 17
    ATOL_FOR_VALIDATION = 1e-4

    def __init__(self, config: PretrainedConfig, task: str = "image-classification", **kwargs):
        if task != "image-classification":
            raise ValueError(
                f"{type(self).__name__} exports the 'image-classification' task only, got {task!r}."
            )
        super().__init__(config, task=task, **kwargs)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return OrderedDict({"pixel_values": {0: "batch_size"}})

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        outputs = OrderedDict({"logits": {0: "batch_size"}})
        if getattr(self._config, "valence_arousal", False):
            outputs["valence_arousal"] = {0: "batch_size"}
        return outputs


# model_type -> OnnxConfig class. A guard test checks every registered model type has one.
ONNX_CONFIGS: dict[str, type[VisionOnnxConfig]] = {"fer_expression": FerOnnxConfig}


def onnx_config_for(config: PretrainedConfig, input_size: int | None = None) -> VisionOnnxConfig:
    """The `OnnxConfig` instance for a model `config` of one of our model types; `input_size`
    (the side of the processor's output, e.g. its centre crop) overrides `image_size`."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ONNX_CONFIGS:
        raise ValueError(
            f"No ONNX export config for model_type {model_type!r}; expected one of "
            f"{sorted(ONNX_CONFIGS)} (a folder written by `fer-hf init` or training)."
        )
    if input_size is not None and input_size != getattr(config, "image_size", None):
        config = copy.deepcopy(config)
        config.image_size = input_size  # the exported graph's fixed spatial axes
    return ONNX_CONFIGS[model_type](config)
