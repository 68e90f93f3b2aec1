"""Image processor saved beside every fer-hf model: resize, grayscale handling, normalisation.

Imports only numpy, PIL and transformers: a saved model folder carries this file and loads it
with `trust_remote_code=True` without fer_hf.
"""

import numpy as np
import PIL.Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature, get_size_dict
from transformers.image_transforms import to_pil_image
from transformers.image_utils import (
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    to_numpy_array,
    valid_images,
)
from transformers.utils import TensorType


def _flat_images(images) -> list:
    """One image, a list (or nested lists) of images, or a 4-D batch array -> a flat list."""
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flat_images(item)]
    if getattr(images, "ndim", None) == 4:
        return list(images)
    return [images]


class FerImageProcessor(BaseImageProcessor):
    r"""
    Turns face crops (PIL images, numpy arrays or torch tensors; grayscale, RGB or RGBA) into the
    `pixel_values` a fer-hf model takes. Every image goes through PIL, so arrays and PIL images
    give identical results:

    1. to a PIL image in mode "L" when `do_grayscale` or `num_channels == 1`, else "RGB" (a model
       trained on grayscale data such as FER2013 sees webcam colour photos as gray too);
    2. resize to `size`, then (when `crop_size` is set) crop its centre to `crop_size`: a model
       trained on random crops of the resized face (the FER2013 literature's 40 px crops of
       48 px faces) then sees one view at its training scale;
    3. to `num_channels` channels (gray is repeated to 3 for a 3-channel model);
    4. rescale by `rescale_factor` and normalise with `image_mean`/`image_std`; channels first.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Resize to `size` (faces are crops, so the aspect ratio is not kept).
        size (`dict[str, int]` or `int`, *optional*, defaults to `{"height": 48, "width": 48}`):
            Output size; an int means a square.
        resample (`PILImageResampling`, *optional*, defaults to `BILINEAR`):
            Resampling filter of the resize.
        crop_size (`dict[str, int]` or `int`, *optional*):
            Centre crop taken from the resized face (no crop when None); the output size then.
        do_grayscale (`bool`, *optional*, defaults to `False`):
            Convert colour images to grayscale (ITU-R 601 luma, as PIL's "L" mode) first.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the output, 1 or 3; equal to the model's `num_channels`.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Multiply pixel values (0-255) by `rescale_factor`.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Rescale factor.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Subtract `image_mean` and divide by `image_std`, per channel.
        image_mean (`list[float]`, *optional*, defaults to 0.5 per channel):
            Per-channel mean, `num_channels` values.
        image_std (`list[float]`, *optional*, defaults to 0.5 per channel):
            Per-channel standard deviation, `num_channels` values.
    """

    model_input_names = ["pixel_values"]
    # Saved processors always carry `auto_map` and this code, whichever process saves them.
    _auto_class = "AutoImageProcessor"

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        resample: PILImageResampling = PILImageResampling.BILINEAR,
        do_grayscale: bool = False,
        num_channels: int = 3,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        crop_size: dict[str, int] | int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels!r}.")
        image_mean = [0.5] * num_channels if image_mean is None else list(image_mean)
        image_std = [0.5] * num_channels if image_std is None else list(image_std)
        for name, values in (("image_mean", image_mean), ("image_std", image_std)):
            if len(values) != num_channels:
                raise ValueError(
                    f"`{name}` must have one value per channel ({num_channels}), got {values}."
                )
        if any(s <= 0 for s in image_std):
            raise ValueError(f"`image_std` values must be positive, got {image_std}.")
        self.do_resize = do_resize
        self.size = get_size_dict(size if size is not None else 48)
        self.resample = resample
        self.do_grayscale = do_grayscale
        self.num_channels = num_channels
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = image_mean
        self.image_std = image_std
        self.crop_size = None if crop_size is None else get_size_dict(crop_size)
        if self.crop_size is not None and not (
            0 < self.crop_size["height"] <= self.size["height"]
            and 0 < self.crop_size["width"] <= self.size["width"]
        ):
            raise ValueError(
                f"`crop_size` {self.crop_size} must be positive and fit in `size` {self.size}."
            )

    @property
    def output_size(self) -> dict[str, int]:
        """`{"height", "width"}` of the `pixel_values` this processor makes."""
        return dict(self.crop_size or self.size)

    def _to_pil(self, image, input_data_format: ChannelDimension | str | None) -> PIL.Image.Image:
        if isinstance(image, PIL.Image.Image):
            return image
        array = to_numpy_array(image)
        if array.ndim == 2:
            return to_pil_image(array[..., None], input_data_format=ChannelDimension.LAST)
        if array.ndim != 3:
            raise ValueError(
                f"An image must have 2 or 3 dimensions (H, W[, C]) or (C, H, W), got shape "
                f"{array.shape}."
            )
        if input_data_format is None:
            if array.shape[-1] in (1, 3, 4):
                input_data_format = ChannelDimension.LAST
            elif array.shape[0] in (1, 3, 4):
                input_data_format = ChannelDimension.FIRST
            else:
                raise ValueError(
                    f"Cannot find the channel axis of an image of shape {array.shape}: images "
                    "must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, first or last."
                )
        return to_pil_image(array, input_data_format=input_data_format)

    def preprocess(
        self,
        images: ImageInput,
        do_resize: bool | None = None,
        size: dict[str, int] | int | None = None,
        resample: PILImageResampling | None = None,
        do_grayscale: bool | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        do_center_crop: bool | None = None,
        return_tensors: str | TensorType | None = None,
        input_data_format: ChannelDimension | str | None = None,
    ) -> BatchFeature:
        """Preprocess one image or a batch; arguments left as None take the processor's values.
        `do_center_crop=False` skips the centre crop (e.g. for ten-crop test-time augmentation).

        `input_data_format` says where the channels of array inputs are ("channels_first" or
        "channels_last"); inferred when None. Returns a `BatchFeature` with `pixel_values` of
        shape `(batch, num_channels, height, width)`.
        """
        do_resize = self.do_resize if do_resize is None else do_resize
        size = get_size_dict(self.size if size is None else size)
        resample = self.resample if resample is None else resample
        do_grayscale = self.do_grayscale if do_grayscale is None else do_grayscale
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = np.asarray(self.image_mean if image_mean is None else image_mean, np.float32)
        std = np.asarray(self.image_std if image_std is None else image_std, np.float32)
        crop = self.crop_size if do_center_crop is not False else None

        images = _flat_images(images)
        if not images or not valid_images(images):
            raise TypeError(
                "Images must be PIL images, numpy arrays or torch tensors, got "
                f"{sorted({type(image).__name__ for image in images})}."
            )
        gray = do_grayscale or self.num_channels == 1
        pixel_values = []
        for image in images:
            pil = self._to_pil(image, input_data_format).convert("L" if gray else "RGB")
            if do_resize:
                pil = pil.resize((size["width"], size["height"]), resample=resample)
            if crop is not None:
                left, top = (pil.width - crop["width"]) // 2, (pil.height - crop["height"]) // 2
                pil = pil.crop((left, top, left + crop["width"], top + crop["height"]))
            array = np.asarray(pil, dtype=np.float32)
            array = array[..., None] if array.ndim == 2 else array  # (H, W, 1 or 3)
            if array.shape[-1] != self.num_channels:
                array = np.repeat(array, self.num_channels, axis=-1)  # gray -> 3 equal channels
            if do_rescale:
                array = array * rescale_factor
            if do_normalize:
                array = (array - mean) / std
            pixel_values.append(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (C, H, W)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)


__all__ = ["FerImageProcessor"]
