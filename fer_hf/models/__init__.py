"""fer-hf models: one expression head over ResNet, ViT and our factorized-convolution backbone.

Load a saved folder with `load_model_folder(path)` (model + processor, classes registered); call
`register()` once before using the transformers Auto classes on fer-hf folders yourself. Model files
here use relative imports only (they travel inside saved folders); see DESIGN.md "Models".
"""

from .builders import (
    BACKBONE_TYPES,
    DEFAULT_IMAGE_SIZE,
    MODEL_KINDS,
    VARIANTS,
    build_model,
    default_backbone_config,
    from_pretrained_backbone,
    init_model_folder,
    register,
    tiny_config,
)
from .configuration_factorized import FACTORIZATIONS, FactorizedConfig
from .configuration_fer import FerConfig
from .image_processing_fer import FerImageProcessor
from .loading import label_names, load_model_folder, load_processor
from .modeling_factorized import FactorizedModel
from .modeling_fer import FerExpressionOutput, FerForExpressionRecognition

__all__ = [
    "BACKBONE_TYPES",
    "DEFAULT_IMAGE_SIZE",
    "FACTORIZATIONS",
    "MODEL_KINDS",
    "VARIANTS",
    "FactorizedConfig",
    "FactorizedModel",
    "FerConfig",
    "FerExpressionOutput",
    "FerForExpressionRecognition",
    "FerImageProcessor",
    "build_model",
    "default_backbone_config",
    "from_pretrained_backbone",
    "init_model_folder",
    "label_names",
    "load_model_folder",
    "load_processor",
    "register",
    "tiny_config",
]
