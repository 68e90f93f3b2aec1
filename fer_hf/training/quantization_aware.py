"""Quantization-aware fine-tuning: ONNX Runtime's static int8 simulated in PyTorch.

Pure torch plus fer_hf.models; never export, hub or cli.

`QuantizationSimulator` reproduces, on the factorized CNN, the int8 graph that
`fer_hf.export.quantization.quantize` builds (static, QOperator, the AVX2 preset):
- Weights: per output channel, symmetric int8 in [-127, 127] (zero point 0, scale
  `max|w| / 127`) of the BN-folded convolution: the values the quantizer stores, bit for bit.
  Folding multiplies each output channel by `gamma / sigma`, and with it that channel's scale,
  so quantizing the raw weight gives the same grid once batch norm is frozen (the simulator puts
  every BatchNorm in eval mode while it is attached; dropout too, so that the fp32 and int8
  passes of a step run the same network).
- Activations: per tensor, asymmetric uint8 from min/max ranges over calibration images (as
  ORT's MinMax calibration) at each convolution's output after batch norm and ReLU (ORT folds the
  ReLU into QLinearConv's output range), each residual sum (QLinearAdd) and the global average
  pool (QLinearGlobalAveragePool).
- Kept in fp32, as the export keeps them by design: the convolutions reading the network input and
  the classifier. Their outputs are still quantized where an int8 node reads them.

Not simulated: the int32 rounding of the folded biases and the integer accumulation order. ORT's
kernels are exact integer arithmetic (checked layer by layer), but those sub-step differences
move a few values across a rounding boundary and deep layers amplify them: on the 30-epoch
release, the simulated and the ORT int8 logits agree on 98.0% of the validation faces (each
agrees with fp32 on 96%, all nodes int8). The simulation is exact in distribution, not per image.

Rounding uses a straight-through estimator (`torch.fake_quantize_*`: the gradient passes inside
the range and is zero where the value clips). `FerTrainer` trains both paths with a consistency
term, so the fp32 model keeps its predictions and its int8 export agrees with them.

References: Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", arXiv:1712.05877; Krishnamoorthi 2018, "Quantizing deep
convolutional networks for efficient inference: A whitepaper", arXiv:1806.08342.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..models.modeling_factorized import (
    ActivationClamp,
    ConvNormAct,
    FactorizedModel,
    InvertedResidual,
)

UINT8_MIN, UINT8_MAX = 0, 255  # activations
INT8_SYMMETRIC_MAX = 127  # weights: ORT's symmetric int8 range is [-127, 127]
_TINY = torch.finfo(torch.float32).tiny


def weight_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ORT's per-output-channel symmetric int8 scale and zero point (0) for a conv weight."""
    absmax = weight.detach().abs().flatten(1).amax(dim=1).float()
    scale = absmax / INT8_SYMMETRIC_MAX
    scale = torch.where(scale < _TINY, torch.ones_like(scale), scale)  # ORT's all-zero fallback
    return scale, torch.zeros_like(scale, dtype=torch.int32)


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """ORT's asymmetric uint8 scale and zero point for a calibrated range `[low, high]`."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / (UINT8_MAX - UINT8_MIN)
    if scale < _TINY:
        return 1.0, 0
    # float32 as ORT stores it; round half to even as numpy.round
    scale = float(torch.tensor(scale, dtype=torch.float32))
    return scale, int(torch.tensor(-low / scale).round().clamp(UINT8_MIN, UINT8_MAX))


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    scale, zero_point = weight_qparams(weight)
    return torch.fake_quantize_per_channel_affine(
        weight,
        scale.to(weight.device),
        zero_point.to(weight.device),
        0,
        -INT8_SYMMETRIC_MAX,
        INT8_SYMMETRIC_MAX,
    )


def with_activation_clips(model: nn.Module) -> nn.Module:
    """A copy of a factorized fer-hf model with `clip_activations` on (infinite bounds: same
    outputs).

    A model that already has them is returned as is.
    """
    backbone_config = getattr(model.config, "backbone_config", None)
    if getattr(backbone_config, "model_type", None) != "fer_factorized":
        raise ValueError("Activation clips exist for the factorized backbone only.")
    if backbone_config.clip_activations:
        return model
    config = copy.deepcopy(model.config)
    config.backbone_config.clip_activations = True
    clipped = type(model)(config)
    missing, unexpected = clipped.load_state_dict(model.state_dict(), strict=False)
    bounds = all(key.endswith((".low", ".high")) for key in missing)
    if unexpected or not bounds:  # only the new clamp buffers may be missing
        raise RuntimeError(f"Unexpected state-dict change: {unexpected or missing}.")
    return clipped.to(next(model.parameters()).device).train(model.training)


@torch.no_grad()
def calibrate_activation_clips(
    model: nn.Module, pixel_values: torch.Tensor, quantile: float, batch_size: int = 64
) -> dict[str, tuple[float, float]]:
    """Set every `ActivationClamp`'s bounds to the `quantile` (and, where `low` may move,
    `1 - quantile`) of its input over `pixel_values`, all measured unclipped in one eval pass.

    Returns `{module name: (low, high)}`.
    """
    if not 0.5 < quantile <= 1.0:
        raise ValueError(f"The clip quantile must be in (0.5, 1], got {quantile!r}.")
    clamps = {n: m for n, m in model.named_modules() if isinstance(m, ActivationClamp)}
    if not clamps:
        raise ValueError("The model has no activation clamps (clip_activations is off).")
    limit = 1 << 22  # values kept per clamp (torch.quantile's input limit is 2**24)
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in clamps}
    generator = torch.Generator().manual_seed(0)

    def keep(name):
        def hook(module, inputs):
            values = inputs[0].detach().flatten().float().cpu()
            if values.numel() > limit // 4:
                index = torch.randint(values.numel(), (limit // 4,), generator=generator)
                values = values[index]
            seen[name].append(values)

        return hook

    for clamp in clamps.values():
        clamp.low.fill_(0.0 if clamp.fixed_low else float("-inf"))
        clamp.high.fill_(float("inf"))
    handles = [m.register_forward_pre_hook(keep(n)) for n, m in clamps.items()]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(pixel_values), batch_size):
            model(pixel_values=pixel_values[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    bounds = {}
    for name, clamp in clamps.items():
        values = torch.cat(seen[name])
        if values.numel() > limit:
            values = values[torch.randint(values.numel(), (limit,), generator=generator)]
        clamp.high.fill_(float(torch.quantile(values, quantile)))
        if not clamp.fixed_low:
            clamp.low.fill_(float(torch.quantile(values, 1 - quantile)))
        bounds[name] = (clamp.low.item(), clamp.high.item())
    return bounds


class _Observer:
    """One activation quantization point: its calibrated range and the fake-quant it applies."""

    def __init__(self, name: str):
        self.name = name
        self.low = float("inf")
        self.high = float("-inf")
        self.scale: float | None = None
        self.zero_point = 0

    def observe(self, value: torch.Tensor) -> None:
        value = value.detach()
        self.low = min(self.low, float(value.min()))
        self.high = max(self.high, float(value.max()))

    def freeze(self) -> None:
        self.scale, self.zero_point = activation_qparams(self.low, self.high)

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(
            value, self.scale, self.zero_point, UINT8_MIN, UINT8_MAX
        )


class QuantizationSimulator:
    """Attaches int8 simulation to a fer-hf model with a factorized backbone.

    Nothing changes until `simulate()` is entered: the hooks pass values through unchanged, so
    the fp32 forward, `state_dict` and `save_pretrained` are untouched. `calibrate(pixel_values)`
    must run first (and again whenever the weights have moved, e.g. every few hundred steps).

    Example:
        sim = QuantizationSimulator(model)
        sim.calibrate(calibration_pixel_values)
        with sim.simulate():
            int8_logits = model(pixel_values=x).logits
        sim.remove()
    """

    def __init__(self, model: nn.Module):
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, FactorizedModel):
            raise ValueError(
                "Quantization-aware training supports the factorized backbone (model_kind "
                f"factorized), the one whose int8 export is the fast path; got "
                f"{type(backbone).__name__ if backbone is not None else type(model).__name__}."
            )
        if backbone.config.se_ratio > 0:
            raise ValueError(
                "Quantization-aware training does not simulate squeeze-excitation blocks "
                f"(se_ratio={backbone.config.se_ratio}); use a factorized model with se_ratio 0 "
                "(the default)."
            )
        self.model = model
        self._mode = "off"  # "off", "observe" or "simulate"
        self._wrapped_convs: list[nn.Conv2d] = []
        self._hooks: list = []
        self.observers: list[_Observer] = []
        self.quantized_convs: list[str] = []
        float_convs = {id(m) for m in backbone.stem.modules() if isinstance(m, nn.Conv2d)}
        for name, module in backbone.named_modules():
            if isinstance(module, nn.Conv2d) and id(module) not in float_convs:
                self._wrap_conv(module)
                self.quantized_convs.append(f"backbone.{name}")
            is_residual = isinstance(module, InvertedResidual) and module.use_residual
            if isinstance(module, ConvNormAct) or is_residual or module is backbone.pooler:
                self._observe_output(f"backbone.{name}", module)
        frozen = (nn.BatchNorm2d, nn.Dropout)
        self._frozen = [m for m in model.modules() if isinstance(m, frozen)]
        self._freeze_handle = model.register_forward_pre_hook(self._freeze)

    @property
    def calibrated(self) -> bool:
        return bool(self.observers) and all(o.scale is not None for o in self.observers)

    def _wrap_conv(self, conv: nn.Conv2d) -> None:
        # `Conv2d.forward` calls `self._conv_forward(input, self.weight, self.bias)`: an instance
        # attribute in front of it quantizes the weight without touching the parameter itself.
        original = type(conv)._conv_forward

        def conv_forward(input, weight, bias):
            if self._mode == "simulate":
                weight = fake_quantize_weight(weight)
            return original(conv, input, weight, bias)

        conv._conv_forward = conv_forward
        self._wrapped_convs.append(conv)

    def _observe_output(self, name: str, module: nn.Module) -> None:
        observer = _Observer(name)
        self.observers.append(observer)

        def hook(_module, _inputs, output):
            if self._mode == "observe":
                observer.observe(output)
            elif self._mode == "simulate":
                return observer(output)
            return None

        self._hooks.append(module.register_forward_hook(hook))

    def _freeze(self, _module, _inputs) -> None:
        # Frozen batch-norm statistics make the folded weights ORT's; no dropout makes the fp32
        # and int8 passes of a step differ by quantization alone.
        for module in self._frozen:
            module.eval()

    @torch.no_grad()
    def calibrate(self, pixel_values: torch.Tensor, batch_size: int = 64) -> None:
        """Min/max ranges of every quantization point over `pixel_values` (fp32 forward, eval)."""
        if len(pixel_values) == 0:
            raise ValueError("Calibration needs at least one image.")
        was_training = self.model.training
        self.model.eval()
        for observer in self.observers:
            observer.low, observer.high = float("inf"), float("-inf")
        device = next(self.model.parameters()).device
        self._mode = "observe"
        try:
            for start in range(0, len(pixel_values), batch_size):
                self.model(pixel_values=pixel_values[start : start + batch_size].to(device))
        finally:
            self._mode = "off"
            self.model.train(was_training)
        for observer in self.observers:
            observer.freeze()

    @contextmanager
    def simulate(self) -> Iterator[None]:
        """Within the block, forward passes run the simulated int8 network."""
        if not self.calibrated:
            raise RuntimeError("Call `calibrate(pixel_values)` before `simulate()`.")
        self._mode = "simulate"
        try:
            yield
        finally:
            self._mode = "off"

    def remove(self) -> None:
        """Detach every hook; the model is exactly as it was given."""
        for conv in self._wrapped_convs:
            del conv._conv_forward
        for hook in (*self._hooks, self._freeze_handle):
            hook.remove()
        self._wrapped_convs.clear()
        self._hooks.clear()


__all__ = [
    "QuantizationSimulator",
    "activation_qparams",
    "calibrate_activation_clips",
    "fake_quantize_weight",
    "weight_qparams",
    "with_activation_clips",
]
