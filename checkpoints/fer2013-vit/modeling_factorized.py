"""The factorized-convolution backbone: inverted residual blocks with plain or factorized convs.

Imports only torch, transformers and sibling files: a saved model folder carries this file.

References:
- Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications" (depthwise separable convolutions), arXiv:1704.04861.
- Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", arXiv:1801.04381.
- Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision" (Inception-v3;
  spatial factorization of a k x k convolution into k x 1 then 1 x k), arXiv:1512.00567.
- Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507.
- Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
  Classification" (mini-Xception on FER2013), arXiv:1710.07557.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention

from .configuration_factorized import FactorizedConfig


class ActivationClamp(nn.Module):
    """`clamp(x, low, high)` with the bounds as buffers (saved with the weights).

    Infinite bounds (the initial `high`) make it the identity, or a ReLU with `low=0`. ONNX
    export gives one `Clip` node, which ONNX Runtime's quantizer folds into the producing
    QLinearConv/QLinearAdd: the calibrated int8 range then ends at `high`, not at the largest
    activation seen. `fixed_low` says whether calibration may move `low` (False) or it is a
    ReLU's 0 (True).
    """

    def __init__(self, low: float = float("-inf")):
        super().__init__()
        self.fixed_low = low != float("-inf")
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float("inf")))

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return torch.clamp(hidden_state, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low.item():g}, high={self.high.item():g}"


def _activation(act_layer: nn.Module | None, clamp: bool) -> list[nn.Module]:
    """The modules after batch norm: the activation, clamped when `clamp` (ReLU -> [0, high])."""
    if not clamp:
        return [act_layer if act_layer is not None else nn.Identity()]
    if act_layer is None:
        return [ActivationClamp()]
    if isinstance(act_layer, nn.ReLU):
        return [ActivationClamp(low=0.0)]
    return [act_layer, ActivationClamp()]


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional activation (-> `ActivationClamp`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        act_layer: nn.Module | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        clamp: bool = False,
    ):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                (kh, kw),
                stride=stride,
                padding=(kh // 2, kw // 2),
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
            *_activation(act_layer, clamp),
        )


def spatial_conv(
    channels: int,
    kernel_size: int,
    stride: int,
    factorization: str,
    act: str,
    eps: float = 1e-5,
    momentum: float = 0.1,
    clamp: bool = False,
) -> nn.Sequential:
    """The k x k channel-preserving spatial convolution of a block, built as `factorization` says.

    "none": full k x k (k^2 C^2 MACs per pixel). "depthwise": depthwise k x k (k^2 C).
    "spatial": full k x 1 then full 1 x k (2k C^2). "both": depthwise k x 1 then 1 x k (2k C).
    Every convolution is followed by batch norm and the activation, as in Inception-v3.
    """
    groups = channels if factorization in ("depthwise", "both") else 1
    norm = {"eps": eps, "momentum": momentum, "clamp": clamp}
    if factorization in ("none", "depthwise"):
        return nn.Sequential(
            ConvNormAct(channels, channels, kernel_size, stride, groups, ACT2FN[act], **norm)
        )
    return nn.Sequential(
        ConvNormAct(channels, channels, (kernel_size, 1), (stride, 1), groups, ACT2FN[act], **norm),
        ConvNormAct(channels, channels, (1, kernel_size), (1, stride), groups, ACT2FN[act], **norm),
    )


class SqueezeExcitation(nn.Module):
    """Channel attention from globally pooled features (Hu et al. 2018)."""

    def __init__(self, channels: int, squeeze_channels: int, act: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = ACT2FN[act]
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        scale = self.gate(
            self.expand(self.act(self.reduce(self.pool(hidden_state))))
        )  # (B, C, 1, 1)
        return hidden_state * scale


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> spatial conv -> (SE) -> linear 1x1 project (+ residual)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        kernel_size: int,
        factorization: str,
        se_ratio: float,
        act: str,
        eps: float = 1e-5,
        momentum: float = 0.1,
        clamp: bool = False,
    ):
        super().__init__()
        hidden = in_channels * expand_ratio
        norm = {"eps": eps, "momentum": momentum, "clamp": clamp}
        self.expand = (
            ConvNormAct(in_channels, hidden, 1, act_layer=ACT2FN[act], **norm)
            if expand_ratio != 1
            else nn.Identity()
        )
        self.spatial = spatial_conv(hidden, kernel_size, stride, factorization, act, **norm)
        squeeze = max(1, int(hidden * se_ratio))
        self.se = SqueezeExcitation(hidden, squeeze, act) if se_ratio > 0 else nn.Identity()
        self.project = ConvNormAct(hidden, out_channels, 1, **norm)
        # No clamp on the residual sum: ONNX Runtime fuses Conv + Add (+ Clip) in its blocked
        # layout, and a Clip after the Add broke that fusion (30% slower fp32, measured).
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.spatial(self.expand(hidden_state))))
        return hidden_state + out if self.use_residual else out


class FactorizedStage(nn.Module):
    """`depth` inverted residual blocks; the first one changes width and applies the stride."""

    def __init__(self, config: FactorizedConfig, index: int, in_channels: int):
        super().__init__()
        out_channels = config.hidden_sizes[index]
        self.layers = nn.Sequential(
            *(
                InvertedResidual(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride=config.strides[index] if i == 0 else 1,
                    expand_ratio=config.expand_ratios[index],
                    kernel_size=config.kernel_size,
                    factorization=config.factorization,
                    se_ratio=config.se_ratio,
                    act=config.hidden_act,
                    eps=config.batch_norm_eps,
                    momentum=config.batch_norm_momentum,
                    clamp=config.clip_activations,
                )
                for i in range(config.depths[index])
            )
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_state)


class FactorizedPreTrainedModel(PreTrainedModel):
    config_class = FactorizedConfig
    base_model_prefix = "factorized"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, InvertedResidual) and module.use_residual:
            # Zero-init the last BN of residual blocks: each block starts as the identity, which
            # makes small nets train faster and more stably (Goyal et al. 2017, arXiv:1706.02677).
            nn.init.zeros_(module.project[1].weight)


class FactorizedModel(FactorizedPreTrainedModel):
    """Stem -> stages of inverted residual blocks -> 1x1 head conv -> global average pooling.

    Returns `last_hidden_state` `(B, C, h, w)` and `pooler_output` `(B, C, 1, 1)` (as ResNetModel).
    """

    def __init__(self, config: FactorizedConfig):
        super().__init__(config)
        norm = {
            "eps": config.batch_norm_eps,
            "momentum": config.batch_norm_momentum,
            "clamp": config.clip_activations,
        }
        act = config.hidden_act
        self.stem = ConvNormAct(
            config.num_channels, config.stem_channels, 3, 2, act_layer=ACT2FN[act], **norm
        )
        stages, in_channels = [], config.stem_channels
        for index, width in enumerate(config.hidden_sizes):
            stages.append(FactorizedStage(config, index, in_channels))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.head = (
            ConvNormAct(in_channels, config.head_channels, 1, act_layer=ACT2FN[act], **norm)
            if config.head_channels
            else nn.Identity()
        )
        self.pooler = nn.AdaptiveAvgPool2d(1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        # Channels-last makes oneDNN's depthwise convolutions several times faster on CPU (and
        # suits cuDNN); it changes only the memory layout, so ONNX export sees no extra node.
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        hidden_state = self.stem(pixel_values)  # (B, stem_channels, H/2, W/2)
        hidden_states = (hidden_state,) if output_hidden_states else None
        for stage in self.stages:
            hidden_state = stage(hidden_state)
            if output_hidden_states:
                hidden_states += (hidden_state,)
        hidden_state = self.head(hidden_state)  # (B, num_features, h, w)
        pooled = self.pooler(hidden_state)  # (B, num_features, 1, 1)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=hidden_state, pooler_output=pooled, hidden_states=hidden_states
        )


__all__ = ["FactorizedModel", "FactorizedPreTrainedModel"]
