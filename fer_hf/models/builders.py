"""Build, initialise and register fer-hf models: the entry points other layers call.

Never copied into saved model folders (no model class lives here), so unlike the modeling files
it may read the label schema from `fer_hf.labels` (through a relative import, see DESIGN.md).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    PretrainedConfig,
    ResNetConfig,
    ViTConfig,
)

from ..labels import SUPPORTED_NUM_CLASSES, id2label, label2id
from .configuration_factorized import FactorizedConfig
from .configuration_fer import FerConfig, backbone_config_from_dict
from .image_processing_fer import FerImageProcessor
from .modeling_factorized import FactorizedModel
from .modeling_fer import FerForExpressionRecognition

logger = logging.getLogger(__name__)

MODEL_KINDS: tuple[str, ...] = ("baseline", "vit", "factorized")
BACKBONE_TYPES: dict[str, str] = {
    "baseline": "resnet",
    "vit": "vit",
    "factorized": "fer_factorized",
}
# Default input side per kind: FER2013's native 48 px for ours; 64 px for the ResNet-18, a usual
# size for small faces (48 px crops upsampled); 224 px for ViT-B/16, its pretraining size.
DEFAULT_IMAGE_SIZE: dict[str, int] = {"baseline": 64, "vit": 224, "factorized": 48}
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": ("resnet18", "resnet50"),
    "vit": ("vit-base", "vit-tiny"),
    "factorized": ("default",),
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_FER_FIELDS = set(inspect.signature(FerConfig.__init__).parameters) - {"self", "kwargs"}


def register() -> None:
    """Register the fer-hf configs, models and processor with the transformers Auto classes.

    Explicit and idempotent. Saved folders carry `auto_map` and the code files without it (the
    classes declare their `_auto_class`); this call lets `AutoConfig`, `AutoModel`,
    `AutoModelForImageClassification` and `AutoImageProcessor` resolve them in-process.
    """
    AutoConfig.register(FerConfig.model_type, FerConfig, exist_ok=True)
    AutoConfig.register(FactorizedConfig.model_type, FactorizedConfig, exist_ok=True)
    AutoModel.register(FactorizedConfig, FactorizedModel, exist_ok=True)
    AutoModel.register(FerConfig, FerForExpressionRecognition, exist_ok=True)
    AutoModelForImageClassification.register(FerConfig, FerForExpressionRecognition, exist_ok=True)
    AutoImageProcessor.register(
        FerConfig, slow_image_processor_class=FerImageProcessor, exist_ok=True
    )


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; expected one of {MODEL_KINDS}.")


def default_backbone_config(
    kind: str, image_size: int, *, num_channels: int, variant: str | None = None
) -> PretrainedConfig:
    """The full-size backbone config of `kind` for `image_size` px inputs.

    baseline: "resnet18" (default) or "resnet50". vit: "vit-base" (ViT-B/16, the default from
    224 px) or "vit-tiny" (DeiT-Ti widths, 6 layers, an 8x8 patch grid; the default below 224 px,
    for 48-112 px faces). factorized: "default" (see `FactorizedConfig`).
    """
    _check_kind(kind)
    if variant is None:
        variant = {"baseline": "resnet18", "factorized": "default"}.get(kind) or (
            "vit-base" if image_size >= 224 else "vit-tiny"
        )
    if variant not in VARIANTS[kind]:
        raise ValueError(f"Unknown {kind} variant {variant!r}; expected one of {VARIANTS[kind]}.")
    if variant == "resnet18":
        return ResNetConfig(
            num_channels=num_channels,
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            layer_type="basic",
        )
    if variant == "resnet50":
        return ResNetConfig(num_channels=num_channels)  # transformers' default is ResNet-50
    if variant == "vit-base":
        if image_size % 16:
            raise ValueError(
                f"ViT-B/16 needs an `image_size` divisible by 16, got {image_size}; use 224."
            )
        return ViTConfig(image_size=image_size, patch_size=16, num_channels=num_channels)
    if variant == "vit-tiny":
        if image_size % 8:
            raise ValueError(
                f"The vit-tiny config uses an 8x8 patch grid and needs an `image_size` divisible "
                f"by 8 (e.g. 48, 64, 96, 112), got {image_size}."
            )
        return ViTConfig(
            image_size=image_size,
            patch_size=image_size // 8,
            num_channels=num_channels,
            hidden_size=192,
            num_hidden_layers=6,
            num_attention_heads=3,
            intermediate_size=768,
        )
    return FactorizedConfig(num_channels=num_channels, image_size=image_size)


def tiny_config(kind: str, image_size: int = 32) -> PretrainedConfig:
    """A tiny backbone config of `kind` (2 stages or layers, 8-16 channels) for fast tests.

    Use it as `build_model(kind, image_size=32, backbone_config=tiny_config(kind))`.
    """
    _check_kind(kind)
    if kind == "baseline":
        return ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
        )
    if kind == "vit":
        return ViTConfig(
            image_size=image_size,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
        )
    return FactorizedConfig(
        image_size=image_size,
        stem_channels=8,
        hidden_sizes=(8, 16),
        depths=(1, 1),
        strides=(1, 2),
        expand_ratios=(1, 2),
        se_ratio=0.25,
        head_channels=16,
    )


def _channels_and_grayscale(
    kind: str, num_channels: int | None, grayscale: bool | None
) -> tuple[int, bool]:
    if grayscale is None:
        grayscale = num_channels == 1 or (num_channels is None and kind == "factorized")
    if num_channels is None:
        num_channels = 1 if kind == "factorized" and grayscale else 3
    if num_channels not in (1, 3):
        raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels!r}.")
    if num_channels == 1 and not grayscale:
        raise ValueError(
            "A 1-channel model takes grayscale images only; pass `grayscale=True`, or "
            "`num_channels=3` for a colour model."
        )
    return num_channels, grayscale


def _split_overrides(backbone_config: PretrainedConfig, overrides: dict) -> tuple[dict, dict]:
    """Split `overrides` into FerConfig fields and backbone config fields (its __init__ args)."""
    backbone_fields = set(inspect.signature(type(backbone_config).__init__).parameters)
    backbone_fields -= {"self", "kwargs", "num_channels", "image_size"}
    fer, backbone = {}, {}
    for key, value in overrides.items():
        if key in _FER_FIELDS:
            fer[key] = value
        elif key in backbone_fields:
            backbone[key] = value
        else:
            raise ValueError(
                f"Unknown config override {key!r}; accepted: task-model fields "
                f"{sorted(_FER_FIELDS - {'backbone_config', 'image_size', 'num_channels'})} and "
                f"{backbone_config.model_type} backbone fields {sorted(backbone_fields)}."
            )
    return fer, backbone


def _processor(kind: str, image_size: int, num_channels: int, grayscale: bool, mean=None, std=None):
    if mean is None or len(mean) != num_channels:
        imagenet = kind == "baseline" and num_channels == 3
        mean = IMAGENET_MEAN if imagenet else [0.5] * num_channels
        std = IMAGENET_STD if imagenet else [0.5] * num_channels
    return FerImageProcessor(
        size={"height": image_size, "width": image_size},
        do_grayscale=grayscale,
        num_channels=num_channels,
        image_mean=list(mean),
        image_std=list(std),
    )


def _labels(num_classes: int) -> dict:
    if num_classes not in SUPPORTED_NUM_CLASSES:
        raise ValueError(
            f"`num_classes` must be one of {SUPPORTED_NUM_CLASSES}, got {num_classes!r}."
        )
    return {"id2label": id2label(num_classes), "label2id": label2id(num_classes)}


def build_model(
    kind: str,
    *,
    image_size: int | None = None,
    num_classes: int = 7,
    valence_arousal: bool = False,
    grayscale: bool | None = None,
    variant: str | None = None,
    **config_overrides,
) -> tuple[FerForExpressionRecognition, FerImageProcessor]:
    """A randomly initialised model of `kind` ("baseline", "vit", "factorized") and its processor.

    Args:
        image_size: input side; defaults to `DEFAULT_IMAGE_SIZE[kind]` (64, 224, 48).
        num_classes: 7 or 8 (`fer_hf.labels`).
        valence_arousal: add the valence/arousal head.
        grayscale: convert colour inputs to gray first; defaults to True for "factorized" (a
            1-channel net for FER2013-like data) and False otherwise.
        variant: backbone size, see `default_backbone_config` / `VARIANTS`.
        config_overrides: `FerConfig` fields (dropout, label_smoothing, class_weights, va_loss,
            va_loss_weight, num_channels, backbone_config, ...) or fields of the backbone config
            (e.g. `factorization="spatial"` or `hidden_sizes=...` for "factorized").
    """
    _check_kind(kind)
    register()
    labels = _labels(num_classes)
    backbone_config = config_overrides.pop("backbone_config", None)
    requested_channels = config_overrides.pop("num_channels", None)
    if backbone_config is not None:
        if backbone_config.model_type != BACKBONE_TYPES[kind]:
            raise ValueError(
                f"A {kind!r} model needs a {BACKBONE_TYPES[kind]!r} backbone config, got "
                f"{backbone_config.model_type!r}."
            )
        requested_channels = requested_channels or backbone_config.num_channels
        if image_size is None:
            image_size = getattr(backbone_config, "image_size", None)
    image_size = image_size or DEFAULT_IMAGE_SIZE[kind]
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"`image_size` must be a positive int, got {image_size!r}.")
    num_channels, grayscale = _channels_and_grayscale(kind, requested_channels, grayscale)
    if backbone_config is None:
        backbone_config = default_backbone_config(
            kind, image_size, num_channels=num_channels, variant=variant
        )
    fer_overrides, backbone_overrides = _split_overrides(backbone_config, config_overrides)
    backbone_dict = {
        **backbone_config.to_dict(),
        **backbone_overrides,
        "num_channels": num_channels,
    }
    if hasattr(backbone_config, "image_size"):
        backbone_dict["image_size"] = image_size
    config = FerConfig(
        backbone_config=backbone_config_from_dict(backbone_dict),
        valence_arousal=valence_arousal,
        image_size=image_size,
        **labels,
        **fer_overrides,
    )
    config.auto_map = {"AutoModel": "modeling_fer.FerForExpressionRecognition"}
    model = FerForExpressionRecognition(config)
    return model, _processor(kind, image_size, num_channels, grayscale)


def _resize_vit_positions(state: dict, key: str, new_grid: int) -> None:
    """Bicubically resize a ViT's patch position embeddings to `new_grid` x `new_grid`."""
    positions = state[key]  # (1, 1 + g*g, D)
    cls_position, grid = positions[:, :1], positions[:, 1:]
    old_grid = int(grid.shape[1] ** 0.5)
    grid = grid.reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)  # (1, D, g, g)
    grid = torch.nn.functional.interpolate(
        grid.float(), size=(new_grid, new_grid), mode="bicubic", align_corners=False
    ).to(positions.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, -1)  # (1, n*n, D)
    state[key] = torch.cat([cls_position, grid], dim=1)


def _load_backbone(kind: str, source: str):
    """(backbone module, its processor or None, its input size or None) from a Hub id or folder."""
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        raise FileNotFoundError(
            f"Cannot load a backbone from {source!r}: it is not a local model folder and the Hub "
            f"lookup failed ({err}). Pass a folder with config.json and model.safetensors, or a "
            "Hub id while online."
        ) from err
    image_size = getattr(config, "image_size", None)
    if config.model_type == FerConfig.model_type:
        backbone = FerForExpressionRecognition.from_pretrained(source).backbone
    elif config.model_type in BACKBONE_TYPES.values():
        extra = {"add_pooling_layer": False} if config.model_type == "vit" else {}
        backbone = AutoModel.from_pretrained(source, **extra)
    else:
        raise ValueError(
            f"{source!r} holds a {config.model_type!r} model; expected a backbone of type "
            f"{sorted(BACKBONE_TYPES.values())} or a fer_expression model."
        )
    if backbone.config.model_type != BACKBONE_TYPES[kind]:
        raise ValueError(
            f"{source!r} holds a {backbone.config.model_type!r} backbone but kind {kind!r} needs "
            f"{BACKBONE_TYPES[kind]!r}; pass kind="
            f"{next(k for k, v in BACKBONE_TYPES.items() if v == backbone.config.model_type)!r}."
        )
    try:
        processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError):
        processor = None
    return backbone, processor, image_size


def from_pretrained_backbone(
    kind: str,
    backbone_id_or_path: str | Path,
    *,
    num_classes: int = 7,
    valence_arousal: bool = False,
    image_size: int | None = None,
    grayscale: bool | None = None,
    **config_overrides,
) -> tuple[FerForExpressionRecognition, FerImageProcessor]:
    """A model of `kind` whose backbone weights come from a Hub id or a local folder.

    The source may hold a bare backbone (`ResNetModel`, `ViTModel`, `FactorizedModel`), a
    classifier built on one (`ResNetForImageClassification`, ...) or a fer-hf model (e.g. an
    8-class AffectNet model to fine-tune on 7-class FER2013). The expression and valence/arousal
    heads are always newly initialised (logged). A ViT is resized to `image_size` by
    interpolating its position embeddings. `config_overrides` as in `build_model`.
    """
    _check_kind(kind)
    register()
    labels = _labels(num_classes)
    source = str(backbone_id_or_path)
    backbone, source_processor, source_size = _load_backbone(kind, source)
    channels = backbone.config.num_channels
    requested = config_overrides.pop("num_channels", channels)
    if requested != channels:
        raise ValueError(
            f"The backbone in {source!r} takes {channels} input channels, got num_channels="
            f"{requested!r}; leave it unset (gray images are repeated to {channels} channels)."
        )
    if grayscale is None:  # a fer-hf source model keeps its grayscale setting
        grayscale = getattr(source_processor, "do_grayscale", None)
    num_channels, grayscale = _channels_and_grayscale(kind, channels, grayscale)
    state = backbone.state_dict()
    backbone_dict = backbone.config.to_dict()
    for key in ("id2label", "label2id", "architectures", "_name_or_path", "problem_type"):
        backbone_dict.pop(key, None)
    if image_size is None:
        image_size = source_size or DEFAULT_IMAGE_SIZE[kind]
    if kind == "vit" and image_size != backbone_dict["image_size"]:
        patch = backbone_dict["patch_size"]
        if image_size % patch:
            raise ValueError(
                f"`image_size` must be a multiple of the ViT's patch size {patch}, got "
                f"{image_size}."
            )
        _resize_vit_positions(state, "embeddings.position_embeddings", image_size // patch)
        backbone_dict["image_size"] = image_size
    elif "image_size" in backbone_dict:
        backbone_dict["image_size"] = image_size
    fer_overrides, backbone_overrides = _split_overrides(backbone.config, config_overrides)
    config = FerConfig(
        backbone_config=backbone_config_from_dict({**backbone_dict, **backbone_overrides}),
        valence_arousal=valence_arousal,
        image_size=image_size,
        **labels,
        **fer_overrides,
    )
    config.auto_map = {"AutoModel": "modeling_fer.FerForExpressionRecognition"}
    model = FerForExpressionRecognition(config)
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(
            f"The weights in {source!r} do not fit the requested backbone config "
            f"(overrides {backbone_overrides}): {err}"
        ) from err
    if missing:
        raise ValueError(f"The weights in {source!r} lack these backbone parameters: {missing}.")
    if unexpected:
        logger.info("Ignored %d unused backbone weights from %s.", len(unexpected), source)
    heads = f"{num_classes}-class expression head" + (
        " and valence/arousal head" if valence_arousal else ""
    )
    logger.warning(
        "Loaded the %s backbone weights from %s; the %s are newly initialised and must be trained.",
        kind,
        source,
        heads,
    )
    mean = getattr(source_processor, "image_mean", None)
    std = getattr(source_processor, "image_std", None)
    return model, _processor(kind, image_size, num_channels, grayscale, mean, std)


def init_model_folder(
    kind: str,
    output: str | Path,
    *,
    image_size: int | None = None,
    num_classes: int = 7,
    valence_arousal: bool = False,
    grayscale: bool | None = None,
    variant: str | None = None,
) -> Path:
    """Write an untrained, loadable model folder of `kind`: config.json (with `auto_map`),
    model.safetensors, preprocessor_config.json and the code files. Returns the folder."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(
            f"Output {str(output)!r} already exists and is not an empty folder; choose a new "
            "path or remove it."
        )
    model, processor = build_model(
        kind,
        image_size=image_size,
        num_classes=num_classes,
        valence_arousal=valence_arousal,
        grayscale=grayscale,
        variant=variant,
    )
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output
