"""On-the-fly transforms for `Dataset.with_transform`: train augmentation, eval preprocessing.

All preprocessing numbers (size, grayscale, mean/std) come from the model's FerImageProcessor, so
training, evaluation and inference see identical inputs. Pure torch + PIL (no torchvision).
Imports nothing from fer_hf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

# ITU-R 601 luma, as PIL's "L" mode.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augmentation:
    """Random train-time augmentation; `DataArguments` fields of the same names set it."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    hflip_prob: float = 0.5
    rotation_degrees: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    erasing_prob: float = 0.25
    erasing_scale: tuple[float, float] = (0.02, 0.2)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)


def _uniform(low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape or (1,))


def _random_boxes(
    sizes: list[tuple[int, int]], scale: tuple[float, float], ratio: tuple[float, float]
) -> list[tuple[float, float, float, float] | None]:
    """Per (width, height): a random (left, top, right, bottom) box whose area is a `scale`
    fraction of the image and whose aspect ratio w / h is log-uniform in `ratio` (Inception's
    random-sized crop); the first of 10 tries that fits, None when none does.

    All random numbers of a batch are drawn in one call: per-value torch calls would dominate.
    """
    tries = 10
    draws = torch.rand(len(sizes), tries, 4, dtype=torch.float64).numpy()
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    boxes = []
    for (width, height), draw in zip(sizes, draws, strict=True):
        area = width * height * (scale[0] + (scale[1] - scale[0]) * draw[:, 0])
        aspect = np.exp(log_low + (log_high - log_low) * draw[:, 1])
        w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
        fits = np.flatnonzero((w <= width) & (h <= height))
        if fits.size == 0:
            boxes.append(None)
            continue
        i = fits[0]
        left, top = (width - w[i]) * draw[i, 2], (height - h[i]) * draw[i, 3]
        boxes.append((float(left), float(top), float(left + w[i]), float(top + h[i])))
    return boxes


class FerTransform:
    """`with_transform` callable: a batch of records -> `pixel_values`, `labels`, `valence`,
    `arousal`.

    Without `augmentation` it is the processor itself (deterministic). With it, each image is
    randomly cropped and resized in one PIL call (antialiased, so large AffectNet crops are not
    aliased), then flipped, rotated, brightness/contrast jittered, normalised and randomly erased
    with torch ops. Randomness comes from torch's global generator, which the Trainer seeds (and
    restores on resume) and DataLoader workers reseed per worker.
    """

    def __init__(self, processor, augmentation: Augmentation | None = None):
        self.processor = processor
        self.augmentation = augmentation
        self.mode = "L" if processor.do_grayscale or processor.num_channels == 1 else "RGB"
        self.size = (processor.size["width"], processor.size["height"])
        channels = processor.num_channels
        self.scale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        mean = processor.image_mean if processor.do_normalize else [0.0] * channels
        std = processor.image_std if processor.do_normalize else [1.0] * channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, batch: dict[str, list]) -> dict[str, object]:
        images = batch["image"]
        if self.augmentation is None:
            pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
        else:
            pixel_values = self.augment(images)
        count = len(images)
        nan = [float("nan")] * count
        return {
            "pixel_values": pixel_values,  # (B, C, H, W)
            "labels": torch.as_tensor(batch["label"], dtype=torch.long),
            "valence": torch.as_tensor(batch.get("valence", nan), dtype=torch.float32),
            "arousal": torch.as_tensor(batch.get("arousal", nan), dtype=torch.float32),
        }

    def augment(self, images: list[PIL.Image.Image]) -> torch.Tensor:
        # The tensors here are small: intra-op threads cost more than they save, and they stall
        # (10x slower, measured) when the training step keeps the other cores busy.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._augment(images)
        finally:
            torch.set_num_threads(threads)

    def _augment(self, images: list[PIL.Image.Image]) -> torch.Tensor:
        aug = self.augmentation
        images = [image.convert(self.mode) for image in images]
        boxes = _random_boxes([image.size for image in images], aug.crop_scale, aug.crop_ratio)
        crops = []
        for image, box in zip(images, boxes, strict=True):
            box = box or (0.0, 0.0, float(image.width), float(image.height))
            crop = image.resize(self.size, resample=self.processor.resample, box=box)
            array = np.asarray(crop, dtype=np.float32)
            crops.append(torch.from_numpy(array[..., None] if array.ndim == 2 else array))
        x = torch.stack(crops).permute(0, 3, 1, 2) / 255.0  # (B, C, H, W) in [0, 1]
        count = x.shape[0]

        flip = torch.rand(count) < aug.hflip_prob
        angle = torch.deg2rad(_uniform(-aug.rotation_degrees, aug.rotation_degrees, count))
        if aug.rotation_degrees > 0:
            # One affine resampling for rotation and flip; reflection padding avoids black corners
            # that the model could learn as a cue.
            cos, sin = torch.cos(angle), torch.sin(angle)
            sign = torch.where(flip, -1.0, 1.0)
            theta = torch.zeros(count, 2, 3)
            theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin
            theta[:, 1, 0], theta[:, 1, 1] = sin * sign, cos
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
        else:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

        brightness = _uniform(1 - aug.brightness, 1 + aug.brightness, count).view(-1, 1, 1, 1)
        contrast = _uniform(1 - aug.contrast, 1 + aug.contrast, count).view(-1, 1, 1, 1)
        x = (x * brightness).clamp(0, 1)
        luma = x if x.shape[1] == 1 else sum(w * x[:, i : i + 1] for i, w in enumerate(_LUMA))
        mean_luma = luma.mean(dim=(1, 2, 3), keepdim=True)
        x = (mean_luma + (x - mean_luma) * contrast).clamp(0, 1)

        if x.shape[1] != self.processor.num_channels:
            x = x.expand(-1, self.processor.num_channels, -1, -1)  # gray -> 3 equal channels
        x = (x * 255.0 * self.scale - self.mean) / self.std
        return self._erase(x.contiguous())

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing (Zhong et al., AAAI 2020): one rectangle per chosen image set to 0
        (the dataset mean after normalisation)."""
        aug = self.augmentation
        count, _, height, width = x.shape
        chosen = torch.nonzero(torch.rand(count) < aug.erasing_prob).flatten().tolist()
        boxes = _random_boxes([(width, height)] * len(chosen), aug.erasing_scale, aug.erasing_ratio)
        for i, box in zip(chosen, boxes, strict=True):
            if box is not None:
                left, top, right, bottom = (int(round(v)) for v in box)
                x[i, :, top:bottom, left:right] = 0.0
        return x


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack `FerTransform` rows into a model batch."""
    return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}


def processor_stats(processor, device=None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, std, scale) of a `FerImageProcessor` as (1, C, 1, 1) tensors and a float such that
    `pixel_values = (uint8 * scale - mean) / std`."""
    channels = processor.num_channels
    mean = processor.image_mean if processor.do_normalize else [0.0] * channels
    std = processor.image_std if processor.do_normalize else [1.0] * channels
    scale = float(processor.rescale_factor) if processor.do_rescale else 1.0

    def as_tensor(values):
        return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    return as_tensor(mean), as_tensor(std), scale


def centre_crop(x: torch.Tensor, crop: dict[str, int]) -> torch.Tensor:
    """The `crop` (`{"height", "width"}`) centre of a (..., H, W) batch: the same box as
    `FerImageProcessor`'s PIL crop."""
    top, left = (x.shape[-2] - crop["height"]) // 2, (x.shape[-1] - crop["width"]) // 2
    return x[..., top : top + crop["height"], left : left + crop["width"]]


def convert_pixel_values(pixel_values: torch.Tensor, source, target) -> torch.Tensor:
    """Re-preprocess a batch made for processor `source` into what processor `target` gives.

    Used to feed a distillation teacher whose size, channels or normalisation differ from the
    student's: undo `source`'s normalisation, convert channels (luma or repeat), take `target`'s
    centre crop of a face at its full size (or of a larger crop of a face resized to the same
    size) or else resize (antialiased bilinear) to what it takes,
    and apply `target`'s normalisation. Runs on the batch's device.
    """

    def stats(processor, device):  # scale maps the processor's rescaled range back to [0, 1]
        mean, std, scale = processor_stats(processor, device)
        return mean, std, scale * 255.0 if processor.do_rescale else 1.0

    mean, std, scale = stats(source, pixel_values.device)
    x = (pixel_values.float() * std + mean) / scale  # (B, C, H, W) in [0, 1]
    gray_target = target.do_grayscale or target.num_channels == 1
    if x.shape[1] == 3 and gray_target:
        weights = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    if x.shape[1] != target.num_channels:
        x = x.expand(-1, target.num_channels, -1, -1)
    full = (target.size["height"], target.size["width"])
    # A crop-trained target gets its own centre crop of a whole face, or of a larger crop of a
    # face resized to its own size (e.g. a 44 px-crop student's crops of the 48 px face a 40 px-crop
    # teacher also starts from): the face at its training scale, not shrunk to the crop size.
    height, width = x.shape[-2:]
    crop = target.crop_size
    larger_crop = (
        dict(source.size) == dict(target.size)
        and crop is not None
        and crop["height"] <= height <= full[0]
        and crop["width"] <= width <= full[1]
    )
    if crop is not None and ((height, width) == full or larger_crop):
        x = centre_crop(x, crop)
    size = (target.output_size["height"], target.output_size["width"])  # what the target takes
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean, std, scale = stats(target, x.device)
    return ((x * scale - mean) / std).to(pixel_values.dtype)


__all__ = ["Augmentation", "FerTransform", "centre_crop", "collate", "convert_pixel_values"]
