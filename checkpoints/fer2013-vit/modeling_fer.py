"""The task model: any supported backbone + expression classifier + optional valence/arousal head.

Imports only torch, transformers and sibling files: a saved model folder carries this file and
must load with `trust_remote_code=True` in a process that has never imported fer_hf.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_fer import FerConfig, min_image_size
from .modeling_factorized import FactorizedModel


@dataclass
class FerExpressionOutput(ModelOutput):
    """
    Output of [`FerForExpressionRecognition`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given):
            Cross-entropy (+ `va_loss_weight` x the masked valence/arousal loss).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Expression logits (before softmax).
        valence_arousal (`torch.FloatTensor` of shape `(batch_size, 2)`, with the head only):
            Predicted valence (column 0) and arousal (column 1), in [-1, 1].
        hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            The backbone's hidden states (its embeddings/stem output, then each stage or layer).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    valence_arousal: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def masked_l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries of `target` that are not NaN (0 when none are)."""
    mask = ~torch.isnan(target)
    # `where` (not multiplication) keeps NaN targets out of both the value and the gradient.
    error = torch.where(mask, prediction - torch.nan_to_num(target), torch.zeros_like(prediction))
    return error.abs().sum() / mask.sum().clamp(min=1)


def masked_ccc_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-8):
    """1 - concordance correlation coefficient (Lin 1989), per column over non-NaN rows, averaged
    over the columns with at least two valid rows (0 when there are none)."""
    mask = (~torch.isnan(target)).to(prediction.dtype)  # (B, 2)
    target = torch.nan_to_num(target)
    count = mask.sum(dim=0)  # (2,)
    denominator = count.clamp(min=1)
    mean_p = (prediction * mask).sum(dim=0) / denominator
    mean_t = (target * mask).sum(dim=0) / denominator
    dev_p = (prediction - mean_p) * mask
    dev_t = (target - mean_t) * mask
    var_p = (dev_p**2).sum(dim=0) / denominator
    var_t = (dev_t**2).sum(dim=0) / denominator
    covariance = (dev_p * dev_t).sum(dim=0) / denominator
    ccc = 2 * covariance / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)
    valid = count >= 2
    per_column = torch.where(valid, 1 - ccc, torch.zeros_like(ccc))
    return per_column.sum() / valid.sum().clamp(min=1)


def valence_arousal_loss(
    prediction: torch.Tensor,
    valence: torch.Tensor | None,
    arousal: torch.Tensor | None,
    kind: str = "ccc",
) -> torch.Tensor:
    """The valence/arousal loss (`FerConfig.va_loss`: "ccc" or "l1") of `prediction` (B, 2)
    against per-sample targets, NaN (or a None target) where unknown; the model's `forward` and
    `FerTrainer` both compute it here."""
    prediction = prediction.float()
    unknown = torch.full(prediction.shape[:1], float("nan"), device=prediction.device)
    columns = [
        unknown if t is None else t.to(prediction.device).float().reshape(-1)
        for t in (valence, arousal)
    ]
    target = torch.stack(columns, dim=1)  # (B, 2)
    if kind == "ccc":
        return masked_ccc_loss(prediction, target)
    return masked_l1_loss(prediction, target)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvTokenizer(nn.Sequential):
    """A ViT's patch projection as a small CNN (Xiao et al. 2021, "Early convolutions help
    transformers see better"): 3x3 conv + BN + ReLU at stride 1, then at stride 2 while the
    total stride stays below `patch_size`, then a 2x2 stride-2 projection to `hidden_size`.
    Widths double from `hidden_size // 8` (at least 16). Total stride `patch_size` (a power of
    two >= 4), so it replaces `ViTPatchEmbeddings.projection` one for one."""

    def __init__(self, num_channels: int, hidden_size: int, patch_size: int):
        width = max(16, hidden_size // 8)
        layers, stride, channels = [_conv_bn_relu(num_channels, width, 1)], 2, width
        while stride < patch_size:
            layers.append(_conv_bn_relu(channels, 2 * channels, 2))
            channels, stride = 2 * channels, 2 * stride
        layers.append(nn.Conv2d(channels, hidden_size, 2, stride=2))
        super().__init__(*layers)

    @property
    def weight(self) -> torch.Tensor:
        """The projection's weight: `ViTModel.forward` reads `projection.weight.dtype`."""
        return self[-1].weight


def _small_resnet_stem(backbone, config) -> None:
    """Swap a ResNetModel's 7x7 stride-2 stem convolution for a 3x3 stride-1 one of the same
    width (conv + BN + activation, as transformers' `ResNetConvLayer`)."""
    layer = type(backbone.embedder.embedder)
    backbone.embedder.embedder = layer(
        config.num_channels,
        config.embedding_size,
        kernel_size=3,
        stride=1,
        activation=config.hidden_act,
    )


def _num_features(backbone_config) -> int:
    if backbone_config.model_type == "resnet":
        return backbone_config.hidden_sizes[-1]
    if backbone_config.model_type == "vit":
        return backbone_config.hidden_size
    return backbone_config.num_features


class FerPreTrainedModel(PreTrainedModel):
    config_class = FerConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone initialises itself (transformers dispatches to its own `_init_weights`).
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                module.bias.data.zero_()


class FerForExpressionRecognition(FerPreTrainedModel):
    """Backbone -> pooled features -> dropout -> expression logits (+ tanh valence/arousal).

    Pooling: ResNet and factorized backbones are globally average pooled; a ViT gives its
    (layer-normed) [CLS] token, as `ViTForImageClassification` does, or with `pooling="mean"`
    the mean of its patch tokens. `stem="small"` resizes the backbone's input layer for small
    faces (see `FerConfig`).
    """

    # Saved folders always carry `auto_map` and this code, whichever process saves them.
    _auto_class = "AutoModelForImageClassification"

    def __init__(self, config: FerConfig):
        super().__init__(config)
        backbone_config = config.backbone_config
        if backbone_config.model_type == "fer_factorized":
            # Built directly, not through AutoModel, so that remote-code loading needs no registry.
            self.backbone = FactorizedModel(backbone_config)
        elif backbone_config.model_type == "vit":
            self.backbone = AutoModel.from_config(backbone_config, add_pooling_layer=False)
        else:
            self.backbone = AutoModel.from_config(backbone_config)
        if config.stem == "small" and backbone_config.model_type == "resnet":
            _small_resnet_stem(self.backbone, backbone_config)
        elif config.stem == "small" and backbone_config.model_type == "vit":
            self.backbone.embeddings.patch_embeddings.projection = ConvTokenizer(
                backbone_config.num_channels,
                backbone_config.hidden_size,
                backbone_config.patch_size,
            )
        num_features = _num_features(backbone_config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(num_features, config.num_labels)
        self.valence_arousal = nn.Linear(num_features, 2) if config.valence_arousal else None
        weights = config.class_weights
        self.register_buffer(
            "class_weights",
            torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
            persistent=False,
        )
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with a clear error for a mismatched label count."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            saved = FerConfig.from_pretrained(pretrained_model_name_or_path)
            config = kwargs.get("config")
            requested = (
                config.num_labels
                if isinstance(config, FerConfig)
                else kwargs.get("num_labels", len(kwargs.get("id2label") or saved.id2label))
            )
            if requested == saved.num_labels:
                raise
            raise ValueError(
                f"{str(pretrained_model_name_or_path)!r} holds a model with {saved.num_labels} "
                f"labels {list(saved.id2label.values())}, but {requested} labels were requested. "
                "To fine-tune it on another label set, re-initialise the head: "
                "fer_hf.models.from_pretrained_backbone(kind, path, num_classes=N) (or pass "
                f"ignore_mismatched_sizes=True). Details: {err}"
            ) from err

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values)}.")
        if pixel_values.ndim != 4:
            raise ValueError(
                "`pixel_values` must have shape (batch, channels, height, width), got "
                f"{tuple(pixel_values.shape)}."
            )
        channels, height, width = pixel_values.shape[1:]
        expected = self.config.num_channels
        if channels != expected:
            raise ValueError(
                f"`pixel_values` has {channels} channels but this model takes {expected}; "
                "preprocess images with the model's FerImageProcessor "
                "(AutoImageProcessor.from_pretrained on the model folder), which converts "
                f"grayscale and colour images to {expected} channel(s)."
            )
        size = self.config.image_size
        if self.config.backbone_config.model_type == "vit":
            if (height, width) != (size, size):
                raise ValueError(
                    f"`pixel_values` are {height}x{width} but this ViT takes {size}x{size} only; "
                    "resize with the model's FerImageProcessor."
                )
        elif min(height, width) < min_image_size(self.config.backbone_config, self.config.stem):
            raise ValueError(
                f"`pixel_values` are {height}x{width}; this model needs at least "
                f"{min_image_size(self.config.backbone_config, self.config.stem)} px per side "
                f"(built for {size})."
            )

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        valence: torch.Tensor | None = None,
        arousal: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> FerExpressionOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images as prepared by [`FerImageProcessor`].
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Expression indices in `[0, num_labels)` (-100 is ignored). The loss is computed
                exactly when they are given.
            valence (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
                Valence targets in [-1, 1]; NaN where unknown. Used only by a model with the
                valence/arousal head, and only together with `labels`.
            arousal (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
                Arousal targets, as `valence`.
            output_hidden_states (`bool`, *optional*):
                Also return the backbone's hidden states.
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states
            if output_hidden_states is not None
            else self.config.output_hidden_states
        )
        outputs = self.backbone(pixel_values, output_hidden_states=output_hidden_states)
        if self.config.backbone_config.model_type == "vit" and self.config.pooling == "mean":
            features = outputs.last_hidden_state[:, 1:].mean(dim=1)  # (B, hidden_size)
        elif self.config.backbone_config.model_type == "vit":
            features = outputs.last_hidden_state[:, 0]  # (B, hidden_size): the [CLS] token
        else:
            features = outputs.pooler_output.flatten(1)  # (B, C, 1, 1) -> (B, C)
        features = self.dropout(features)
        logits = self.classifier(features)  # (B, num_labels)
        valence_arousal = (
            torch.tanh(self.valence_arousal(features)) if self.valence_arousal is not None else None
        )  # (B, 2)

        loss = None
        if labels is not None:
            weight = self.class_weights.float() if self.class_weights is not None else None
            loss = nn.functional.cross_entropy(
                logits.float(),
                labels.to(logits.device).long(),
                weight=weight,
                label_smoothing=self.config.label_smoothing,
            )
            if valence_arousal is not None and (valence is not None or arousal is not None):
                loss = loss + self.config.va_loss_weight * valence_arousal_loss(
                    valence_arousal, valence, arousal, self.config.va_loss
                )
        return FerExpressionOutput(
            loss=loss,
            logits=logits,
            valence_arousal=valence_arousal,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
        )


__all__ = [
    "ConvTokenizer",
    "FerExpressionOutput",
    "FerForExpressionRecognition",
    "FerPreTrainedModel",
    "masked_ccc_loss",
    "masked_l1_loss",
    "valence_arousal_loss",
]
