"""Configuration of the factorized-convolution backbone (`model_type="fer_factorized"`).

Imports only transformers: a saved model folder carries this file and loads it without fer_hf.
"""

from transformers import PretrainedConfig

FACTORIZATIONS = ("none", "spatial", "depthwise", "both")


class FactorizedConfig(PretrainedConfig):
    r"""
    Configuration of [`FactorizedModel`], a small CNN of inverted residual blocks whose spatial
    convolutions are factorized in one of four ways (the project's ablation).

    The defaults are the network we ship for FER2013's 48x48 grayscale faces: about 13 MFLOPs and
    0.3M parameters per image. Like a ResNet it reaches a 12x12 map after two stride-2 steps (stem
    and first block), then spends its budget on 4x-expanded blocks at 12x12, 6x6 and 3x3. Every
    width is a multiple of 16, so ONNX Runtime's blocked (NCHWc) convolution kernels apply.
    Squeeze-and-excitation is off by default: its pooling and gating nodes made batch-1 ONNX
    Runtime latency about 3x longer on a 2-core CPU, too much for a real-time budget.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Input channels: 1 for grayscale faces, 3 for colour.
        image_size (`int`, *optional*, defaults to 48):
            Input size the network is designed for (square). Any size of at least
            `min_image_size` works, since the network ends in global average pooling.
        stem_channels (`int`, *optional*, defaults to 16):
            Output channels of the plain 3x3 stride-2 stem convolution.
        hidden_sizes (`tuple[int]`, *optional*, defaults to `(16, 32, 64, 128)`):
            Output channels of each stage.
        depths (`tuple[int]`, *optional*, defaults to `(1, 2, 2, 2)`):
            Inverted residual blocks per stage.
        strides (`tuple[int]`, *optional*, defaults to `(2, 1, 2, 2)`):
            Stride of the first block of each stage (1 or 2).
        expand_ratios (`tuple[int]`, *optional*, defaults to `(1, 4, 4, 4)`):
            Expansion factor of each stage's blocks (1 skips the 1x1 expansion convolution).
        kernel_size (`int`, *optional*, defaults to 3):
            Size k of the blocks' spatial convolutions (odd).
        factorization (`str`, *optional*, defaults to `"depthwise"`):
            How each block's k x k spatial convolution is built:
            `"none"` a full k x k convolution; `"spatial"` a full k x 1 then a full 1 x k
            convolution (Inception-v3); `"depthwise"` a depthwise k x k convolution (MobileNet);
            `"both"` a depthwise k x 1 then a depthwise 1 x k convolution.
        se_ratio (`float`, *optional*, defaults to 0.0):
            Squeeze-and-excitation bottleneck ratio (relative to the block's expanded channels);
            0 disables squeeze-and-excitation.
        head_channels (`int`, *optional*, defaults to 256):
            Output channels of the final 1x1 convolution before pooling (0 skips it).
        hidden_act (`str`, *optional*, defaults to `"relu"`):
            Activation after every normalised convolution except the projections (a key of
            `transformers.activations.ACT2FN`).
        batch_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the batch normalisation layers.
        batch_norm_momentum (`float`, *optional*, defaults to 0.1):
            Momentum of the batch normalisation running statistics.
        clip_activations (`bool`, *optional*, defaults to `False`):
            Bound the output of every normalised convolution to `[low, high]`
            (buffers saved with the weights; infinite until set from data, e.g. by
            `train.py --qat_clip_percentile`). A ReLU becomes a clip to `[0, high]`. Bounded
            activations give an int8 export finer grids; False keeps the plain network.
    """

    model_type = "fer_factorized"

    def __init__(
        self,
        num_channels: int = 1,
        image_size: int = 48,
        stem_channels: int = 16,
        hidden_sizes: tuple[int, ...] = (16, 32, 64, 128),
        depths: tuple[int, ...] = (1, 2, 2, 2),
        strides: tuple[int, ...] = (2, 1, 2, 2),
        expand_ratios: tuple[int, ...] = (1, 4, 4, 4),
        kernel_size: int = 3,
        factorization: str = "depthwise",
        se_ratio: float = 0.0,
        head_channels: int = 256,
        hidden_act: str = "relu",
        batch_norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.1,
        clip_activations: bool = False,
        **kwargs,
    ):
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels!r}.")
        if factorization not in FACTORIZATIONS:
            raise ValueError(
                f"Unknown `factorization` {factorization!r}; expected one of {FACTORIZATIONS}."
            )
        lengths = {len(hidden_sizes), len(depths), len(strides), len(expand_ratios)}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(
                "`hidden_sizes`, `depths`, `strides` and `expand_ratios` must be non-empty and of "
                f"equal length (one entry per stage), got {tuple(hidden_sizes)}, {tuple(depths)}, "
                f"{tuple(strides)} and {tuple(expand_ratios)}."
            )
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f"Every stage stride must be 1 or 2, got `strides`={tuple(strides)}.")
        if any(d < 1 for d in depths) or any(e < 1 for e in expand_ratios):
            raise ValueError(
                f"`depths` and `expand_ratios` must be >= 1, got {tuple(depths)} and "
                f"{tuple(expand_ratios)}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd int, got {kernel_size!r}.")
        if not 0.0 <= se_ratio <= 1.0:
            raise ValueError(f"`se_ratio` must be in [0, 1], got {se_ratio!r}.")
        self.num_channels = num_channels
        self.image_size = image_size
        self.stem_channels = stem_channels
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.strides = list(strides)
        self.expand_ratios = list(expand_ratios)
        self.kernel_size = kernel_size
        self.factorization = factorization
        self.se_ratio = se_ratio
        self.head_channels = head_channels
        self.hidden_act = hidden_act
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        self.clip_activations = bool(clip_activations)
        super().__init__(**kwargs)
        if image_size < self.min_image_size:
            raise ValueError(
                f"`image_size` must be at least {self.min_image_size} (the network's total stride) "
                f"for this config, got {image_size!r}."
            )

    @property
    def total_stride(self) -> int:
        stride = 2  # the stem
        for s in self.strides:
            stride *= s
        return stride

    @property
    def min_image_size(self) -> int:
        """Smallest input side for which the last stage still sees one real pixel per position."""
        return self.total_stride

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector the backbone returns."""
        return self.head_channels or self.hidden_sizes[-1]


__all__ = ["FACTORIZATIONS", "FactorizedConfig"]
