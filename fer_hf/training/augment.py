"""Whole-batch augmentation on uint8 faces, on whatever device the batch is on.

Imports only torch (and `Augmentation` from transforms); never fer_hf.data, export, hub or cli.

`BatchAugmenter` turns a (B, H, W, C) uint8 batch of decoded faces (`fer_hf.data.decoded`) into
normalised `pixel_values` with the knobs of `Augmentation`, in a fixed number of tensor ops per
batch, not per image:
- random resized crop + rotation + horizontal flip: one `affine_grid` + `grid_sample` per batch.
  Differences to the per-image `FerTransform` (documented in the README): the crop is taken from
  the decoded image at the model's size, not from the original resolution, and a rotation samples
  real pixels from around the crop where the image has them (reflection only past the image's
  own border), where `FerTransform` reflects at the crop's border;
- optional fixed-size random crops (`crop_size`, the FER2013 literature's random 40-44 px crops
  of 48 px faces, no resizing) in place of the random resized crop; evaluate such a model on the
  full face or with `fer-hf evaluate --tta tencrop`;
- brightness and contrast jitter and random erasing as batched arithmetic and masks.

`mix_pairs` is the batch-level mixing that `FerTrainer` applies after it (mixup / CutMix): it
acts on the normalised `pixel_values` of a whole batch and changes the targets' weights, so it
belongs to the loss, not to this per-image pipeline.
Random numbers come from torch's generator of the batch's device, which the `Trainer` seeds (and
restores on resume), so a run is reproducible on one device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .transforms import _LUMA, Augmentation, centre_crop, processor_stats


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C, H, W) float in any channel count -> `channels` (ITU-R 601 luma, or gray repeated)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x.expand(-1, channels, -1, -1)


def _uniform(low: float, high: float, count: int, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, device=device)


def random_boxes(
    count: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device,
    image_aspect: float = 1.0,
) -> torch.Tensor:
    """(count, 4) boxes (centre x, centre y, width, height) as fractions of an image whose
    width / height is `image_aspect`: area a `scale` fraction, pixel aspect ratio w/h log-uniform
    in `ratio` (Inception's random-sized crop), fully inside the image. The first of 10 tries
    that fits, as `FerTransform`; where none does, the whole image."""
    tries = 10
    draw = torch.rand(count, tries, 4, device=device)
    area = scale[0] + (scale[1] - scale[0]) * draw[..., 0]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draw[..., 1]
    aspect = torch.exp(log_ratio) / image_aspect  # in fractions of the image's sides
    width, height = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (width <= 1) & (height <= 1)
    first = torch.where(
        fits.any(dim=1),
        fits.float().argmax(dim=1),
        torch.full_like(fits[:, 0], -1, dtype=torch.long),
    )
    pick = first.clamp(min=0).view(-1, 1)
    width = torch.where(
        first >= 0, width.gather(1, pick).squeeze(1), torch.ones(count, device=device)
    )
    height = torch.where(
        first >= 0, height.gather(1, pick).squeeze(1), torch.ones(count, device=device)
    )
    u = draw[..., 2].gather(1, pick).squeeze(1)
    v = draw[..., 3].gather(1, pick).squeeze(1)
    centre_x = (1 - width) * u + width / 2
    centre_y = (1 - height) * v + height / 2
    return torch.stack([centre_x, centre_y, width, height], dim=1)


class BatchAugmenter:
    """uint8 (B, H, W, C) faces -> augmented, normalised (B, C, h, w) float `pixel_values`.

    `processor` gives the output size, channels and normalisation (a `FerImageProcessor`);
    `crop_size` switches the random resized crop to fixed-size random crops of that many pixels
    (of the processor-sized face), the output then being `crop_size` square.
    """

    def __init__(self, processor, augmentation: Augmentation, crop_size: int | None = None):
        self.processor = processor
        self.augmentation = augmentation
        self.size = (processor.size["height"], processor.size["width"])
        if crop_size is not None and not 8 <= crop_size <= min(self.size):
            raise ValueError(
                f"`crop_size` must be between 8 and the model's input size {min(self.size)}, "
                f"got {crop_size}."
            )
        self.crop_size = crop_size
        self.channels = processor.num_channels

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.crop_size, self.crop_size) if self.crop_size else self.size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"BatchAugmenter takes (B, H, W, C) uint8 images, got {images.dtype} of shape "
                f"{tuple(images.shape)}."
            )
        aug = self.augmentation
        device = images.device
        count = images.shape[0]
        x = images.permute(0, 3, 1, 2).float() / 255.0  # (B, C, H, W) in [0, 1]
        x = to_channels(x, self.channels)
        height, width = x.shape[-2:]
        out_h, out_w = self.output_size
        if self.crop_size:
            # A crop of crop_size model pixels at a random position of the model-sized face.
            frac_w = torch.full((count,), self.crop_size / self.size[1], device=device)
            frac_h = torch.full((count,), self.crop_size / self.size[0], device=device)
            centre_x = (1 - frac_w) * torch.rand(count, device=device) + frac_w / 2
            centre_y = (1 - frac_h) * torch.rand(count, device=device) + frac_h / 2
        else:
            centre_x, centre_y, frac_w, frac_h = random_boxes(
                count, aug.crop_scale, aug.crop_ratio, device, width / height
            ).unbind(1)
        if self.crop_size is None and max(height / out_h, width / out_w) > 2:
            # Bilinear sampling aliases when it shrinks more than 2x: shrink first, antialiased.
            factor = 2 / max(height / out_h, width / out_w)
            x = F.interpolate(
                x, scale_factor=factor, mode="bilinear", antialias=True, align_corners=False
            )

        flip = torch.rand(count, device=device) < aug.hflip_prob
        angle = torch.deg2rad(_uniform(-aug.rotation_degrees, aug.rotation_degrees, count, device))
        cos, sin = torch.cos(angle), torch.sin(angle)
        sign = torch.where(flip, -1.0, 1.0)
        # Output coordinates (normalised, [-1, 1]) -> flipped and rotated within the crop -> the
        # crop's place in the input. Rotation acts in pixel units, hence the aspect terms.
        half_w, half_h = frac_w, frac_h  # half-extent of the crop in normalised input coordinates
        theta = torch.zeros(count, 2, 3, device=device)
        aspect = (width * half_w) / (height * half_h)  # crop width / crop height, in pixels
        theta[:, 0, 0] = half_w * cos * sign
        theta[:, 0, 1] = -half_w * sin / aspect
        theta[:, 1, 0] = half_h * sin * sign * aspect
        theta[:, 1, 1] = half_h * cos
        theta[:, 0, 2] = 2 * centre_x - 1
        theta[:, 1, 2] = 2 * centre_y - 1
        grid = F.affine_grid(theta, [count, x.shape[1], out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        brightness = _uniform(1 - aug.brightness, 1 + aug.brightness, count, device).view(
            -1, 1, 1, 1
        )
        contrast = _uniform(1 - aug.contrast, 1 + aug.contrast, count, device).view(-1, 1, 1, 1)
        x = (x * brightness).clamp(0, 1)
        luma = to_channels(x, 1) if x.shape[1] == 3 else x
        mean_luma = luma.mean(dim=(1, 2, 3), keepdim=True)
        x = (mean_luma + (x - mean_luma) * contrast).clamp(0, 1)

        mean, std, scale = processor_stats(self.processor, device)
        x = (x * (255.0 * scale) - mean) / std
        return self._erase(x.contiguous())

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing (Zhong et al., AAAI 2020): one rectangle per chosen image set to 0 (the
        dataset mean after normalisation), as masks over the whole batch."""
        aug = self.augmentation
        count, _, height, width = x.shape
        device = x.device
        chosen = torch.rand(count, device=device) < aug.erasing_prob
        centre_x, centre_y, box_w, box_h = random_boxes(
            count, aug.erasing_scale, aug.erasing_ratio, device, width / height
        ).unbind(1)
        # Pixel bounds, rounded as FerTransform rounds its boxes.
        left = torch.round((centre_x - box_w / 2) * width).view(-1, 1, 1)
        right = torch.round((centre_x + box_w / 2) * width).view(-1, 1, 1)
        top = torch.round((centre_y - box_h / 2) * height).view(-1, 1, 1)
        bottom = torch.round((centre_y + box_h / 2) * height).view(-1, 1, 1)
        cols = torch.arange(width, device=device).view(1, 1, -1)
        rows = torch.arange(height, device=device).view(1, -1, 1)
        inside = (cols >= left) & (cols < right) & (rows >= top) & (rows < bottom)
        mask = (inside & chosen.view(-1, 1, 1)).unsqueeze(1)  # (B, 1, H, W)
        return x.masked_fill(mask, 0.0)


def mix_pairs(
    pixel_values: torch.Tensor, mixup_alpha: float, cutmix_alpha: float
) -> tuple[torch.Tensor, float]:
    """Mix each image of a batch with its partner in the batch reversed (`pixel_values.flip(0)`,
    the pairing timm uses): mixup (Zhang et al., ICLR 2018), a blend `lam * x + (1 - lam) *
    partner`, or CutMix (Yun et al., ICCV 2019), the partner's pixels pasted into one random box
    of area about `1 - lam`. `lam` ~ Beta(alpha, alpha) of the method drawn; with both alphas > 0
    each batch draws one of the two with even odds (DeiT's recipe). Returns the mixed batch and
    `lam`, the share of each image that is its own (for CutMix, the exact share left once the box
    is clipped to the image), which weights its own target against its partner's.

    Random numbers come from torch's default generator, which the `Trainer` seeds and restores
    on resume; the batch's memory format (channels-last) is kept.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0 or not (mixup_alpha > 0 or cutmix_alpha > 0):
        raise ValueError(
            f"mix_pairs needs mixup_alpha or cutmix_alpha > 0 (neither negative), got "
            f"{mixup_alpha} and {cutmix_alpha}."
        )
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or float(torch.rand(())) < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = pixel_values.flip(0)
    if not use_cutmix:
        return lam * pixel_values + (1 - lam) * partner, lam
    height, width = pixel_values.shape[-2:]
    side = math.sqrt(1 - lam)
    cut_h, cut_w = round(height * side), round(width * side)
    centre_y, centre_x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h - cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w - cut_w // 2, width)
    mixed = pixel_values.clone()
    mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)


def normalize_uint8(images: torch.Tensor, processor) -> torch.Tensor:
    """(B, H, W, C) uint8 already at the processor's size and mode -> `pixel_values`, exactly as
    the processor computes them (centre crop, rescale, normalise; gray repeated to its
    channels)."""
    x = images.permute(0, 3, 1, 2).float()
    if getattr(processor, "crop_size", None) is not None:
        x = centre_crop(x, processor.crop_size)
    x = to_channels(x, processor.num_channels)
    mean, std, scale = processor_stats(processor, images.device)
    return ((x * scale - mean) / std).contiguous()


__all__ = [
    "BatchAugmenter",
    "mix_pairs",
    "normalize_uint8",
    "processor_stats",
    "random_boxes",
    "to_channels",
]
