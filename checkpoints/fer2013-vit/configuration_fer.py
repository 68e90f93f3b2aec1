"""Configuration of the expression-recognition task model (`model_type="fer_expression"`).

Imports only transformers and sibling files: a saved model folder carries this file.
"""

from transformers import CONFIG_MAPPING, PretrainedConfig

from .configuration_factorized import FactorizedConfig

# Backbone model types the task model knows how to pool; see `FerForExpressionRecognition`.
SUPPORTED_BACKBONES = ("resnet", "vit", "fer_factorized")
VA_LOSSES = ("l1", "ccc")
STEMS = ("default", "small")
POOLINGS = ("default", "mean")


def backbone_config_from_dict(config_dict: dict) -> PretrainedConfig:
    """Rebuild a backbone config from its `to_dict()`; works without any Auto registration."""
    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type", None)
    if model_type not in SUPPORTED_BACKBONES:
        raise ValueError(
            f"Unknown backbone model_type {model_type!r}; expected one of {SUPPORTED_BACKBONES}."
        )
    config_dict.pop("transformers_version", None)
    if model_type == FactorizedConfig.model_type:
        return FactorizedConfig(**config_dict)
    return CONFIG_MAPPING[model_type](**config_dict)


def min_image_size(backbone_config: PretrainedConfig, stem: str = "default") -> int:
    """Smallest input side for which the backbone's last stage sees at least one real pixel."""
    if backbone_config.model_type == "vit":
        return backbone_config.patch_size
    if backbone_config.model_type == "resnet":
        strided = len(backbone_config.depths) - 1 + int(backbone_config.downsample_in_first_stage)
        # The embedder's stride-2 conv (stride 1 in the small stem) + stride-2 max pool, then the
        # stages.
        return (2 if stem == "small" else 4) * 2**strided
    return backbone_config.min_image_size


class FerConfig(PretrainedConfig):
    r"""
    Configuration of [`FerForExpressionRecognition`]: a backbone plus an expression classifier
    and an optional valence/arousal head.

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*, defaults to `FactorizedConfig`):
            The backbone's config: a `ResNetConfig` (`"resnet"`), a `ViTConfig` (`"vit"`) or a
            [`FactorizedConfig`] (`"fer_factorized"`). Serialised as a dict with its `model_type`.
        valence_arousal (`bool`, *optional*, defaults to `False`):
            Add a head predicting valence and arousal in [-1, 1] (tanh).
        dropout (`float`, *optional*, defaults to 0.2):
            Dropout on the pooled features, before both heads.
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Label smoothing of the cross-entropy loss, in [0, 1).
        class_weights (`list[float]`, *optional*):
            Per-class weights of the cross-entropy loss (one per label), e.g. inverse frequencies.
        va_loss (`str`, *optional*, defaults to `"l1"`):
            Valence/arousal loss: `"l1"` (mean absolute error) or `"ccc"` (1 - concordance
            correlation coefficient, averaged over valence and arousal). Samples whose target is
            NaN contribute nothing to either.
        va_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the valence/arousal loss added to the cross-entropy.
        image_size (`int`, *optional*):
            Input side the model was built for; defaults to the backbone's `image_size`
            (48 for the default backbone). ViT backbones accept only this size.
        num_channels (`int`, *optional*):
            Input channels (1 or 3); always equal to the backbone's `num_channels`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the heads.
        stem (`str`, *optional*, defaults to `"default"`):
            The backbone's input layer. `"default"` keeps transformers' own. `"small"` sizes it for
            48-112 px faces: a ResNet's 7x7 stride-2 convolution becomes a 3x3 stride-1 one (the
            max-pool stays), so a 48 px face reaches the first stage at 24x24 instead of 12x12;
            a ViT's patch projection becomes a convolutional tokeniser (3x3 convolutions with
            batch norm, one at stride 1 and then stride 2 until a final 2x2 stride-2 projection,
            `patch_size` in total; Xiao et al. 2021), which lets a transformer train from scratch
            on small data. The factorized backbone has its own stem and takes `"default"` only.
        pooling (`str`, *optional*, defaults to `"default"`):
            How a ViT's tokens become one feature vector: `"default"` its [CLS] token (as
            `ViTForImageClassification`), `"mean"` the mean of the patch tokens (better from
            scratch on small data). CNN backbones are always globally average pooled.
        train_crop_size (`int`, *optional*):
            The side of the fixed-size random crops the model was trained on (`train.py
            --crop_size`, e.g. 40 px crops of 48 px faces), recorded by training. Ten-crop
            test-time augmentation then feeds crops of this side unscaled, as training showed
            them; without it the crops are resized to the input size.
        kwargs:
            Forwarded to [`PretrainedConfig`] (e.g. `id2label`, `label2id`).
    """

    model_type = "fer_expression"
    # Saved configs always carry `auto_map` and this code, whichever process saves them.
    _auto_class = "AutoConfig"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict | None = None,
        valence_arousal: bool = False,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        va_loss: str = "l1",
        va_loss_weight: float = 1.0,
        image_size: int | None = None,
        num_channels: int | None = None,
        initializer_range: float = 0.02,
        stem: str = "default",
        pooling: str = "default",
        train_crop_size: int | None = None,
        **kwargs,
    ):
        if backbone_config is None:
            backbone_config = FactorizedConfig()
        elif isinstance(backbone_config, dict):
            backbone_config = backbone_config_from_dict(backbone_config)
        elif not isinstance(backbone_config, PretrainedConfig):
            raise TypeError(
                "`backbone_config` must be a PretrainedConfig or a dict, got "
                f"{type(backbone_config).__name__}."
            )
        elif backbone_config.model_type not in SUPPORTED_BACKBONES:
            raise ValueError(
                f"Unknown backbone model_type {backbone_config.model_type!r}; expected one of "
                f"{SUPPORTED_BACKBONES}."
            )
        self.backbone_config = backbone_config
        if num_channels is not None and num_channels != backbone_config.num_channels:
            raise ValueError(
                f"`num_channels`={num_channels!r} differs from the backbone's "
                f"{backbone_config.num_channels}; set it on the backbone config."
            )
        self.num_channels = backbone_config.num_channels
        backbone_size = getattr(backbone_config, "image_size", None)
        self.image_size = image_size if image_size is not None else backbone_size or 224
        if backbone_config.model_type == "vit" and self.image_size != backbone_size:
            raise ValueError(
                f"`image_size`={self.image_size!r} differs from the ViT backbone's "
                f"{backbone_size}; a ViT accepts one input size only."
            )
        if backbone_config.model_type == "vit" and self.image_size % backbone_config.patch_size:
            raise ValueError(
                f"`image_size`={self.image_size!r} is not a multiple of the ViT's patch size "
                f"{backbone_config.patch_size}."
            )
        if stem not in STEMS:
            raise ValueError(f"Unknown `stem` {stem!r}; expected one of {STEMS}.")
        if stem == "small" and backbone_config.model_type == "fer_factorized":
            raise ValueError(
                "`stem='small'` applies to ResNet and ViT backbones; the factorized backbone "
                "sizes its own stem (use `stem='default'`)."
            )
        if stem == "small" and backbone_config.model_type == "vit":
            patch = backbone_config.patch_size
            if patch < 4 or patch & (patch - 1):
                raise ValueError(
                    f"The convolutional ViT stem needs a power-of-two `patch_size` >= 4, got "
                    f"{patch}."
                )
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown `pooling` {pooling!r}; expected one of {POOLINGS}.")
        if pooling == "mean" and backbone_config.model_type != "vit":
            raise ValueError(
                "`pooling='mean'` applies to ViT backbones; CNN backbones are always average "
                "pooled (use `pooling='default'`)."
            )
        if self.image_size < min_image_size(backbone_config, stem):
            raise ValueError(
                f"`image_size` must be at least {min_image_size(backbone_config, stem)} for this "
                f"{backbone_config.model_type} backbone, got {self.image_size!r}."
            )
        if va_loss not in VA_LOSSES:
            raise ValueError(f"Unknown `va_loss` {va_loss!r}; expected one of {VA_LOSSES}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        self.valence_arousal = valence_arousal
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.class_weights = list(class_weights) if class_weights is not None else None
        self.va_loss = va_loss
        self.va_loss_weight = va_loss_weight
        self.initializer_range = initializer_range
        self.stem = stem
        self.pooling = pooling
        if train_crop_size is not None and not (
            isinstance(train_crop_size, int) and train_crop_size > 0
        ):
            raise ValueError(f"`train_crop_size` must be a positive int, got {train_crop_size!r}.")
        self.train_crop_size = train_crop_size
        super().__init__(**kwargs)
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(
                f"`class_weights` has {len(self.class_weights)} entries but the model has "
                f"{self.num_labels} labels ({list(self.id2label.values())}); give one per label."
            )

    @property
    def sub_configs(self) -> dict[str, type[PretrainedConfig]]:
        # A property (as in DPTConfig): the backbone's class depends on the instance.
        backbone = getattr(self, "backbone_config", None)
        return {"backbone_config": type(backbone)} if backbone is not None else {}


__all__ = [
    "POOLINGS",
    "STEMS",
    "SUPPORTED_BACKBONES",
    "VA_LOSSES",
    "FerConfig",
    "backbone_config_from_dict",
]
