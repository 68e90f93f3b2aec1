"""FerImageProcessor: sizes, grayscale handling, array/PIL agreement, bad inputs, save/load."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fer_hf.models import FerImageProcessor


def face(size=(60, 50), colour=True):
    """A drawn 'face': coloured background, eyes and a mouth, so channels and layout matter."""
    image = Image.new("RGB", size, (200, 120, 40) if colour else (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 12, 20, 22), fill=(10, 200, 30))
    draw.ellipse((30, 12, 40, 22), fill=(10, 30, 220))
    draw.rectangle((15, 35, 35, 40), fill=(250, 250, 250))
    return image


def test_gray_model_turns_colour_into_gray():
    processor = FerImageProcessor(size=48, num_channels=1, do_grayscale=True)
    out = processor(face(), return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 1, 48, 48) and out.dtype == torch.float32
    expected = np.asarray(face().convert("L").resize((48, 48), Image.BILINEAR), np.float32)
    assert np.allclose(out[0, 0].numpy(), (expected / 255 - 0.5) / 0.5, atol=1e-6)


def test_gray_input_is_repeated_for_a_colour_model():
    processor = FerImageProcessor(size=32, num_channels=3)
    gray = face().convert("L")
    out = processor(gray, return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 3, 32, 32)
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])


def test_grayscale_option_on_a_three_channel_model():
    colour = FerImageProcessor(size=32, num_channels=3)(face(), return_tensors="pt")
    gray = FerImageProcessor(size=32, num_channels=3, do_grayscale=True)(
        face(), return_tensors="pt"
    )
    assert not torch.equal(colour["pixel_values"][0, 0], colour["pixel_values"][0, 2])
    assert torch.equal(gray["pixel_values"][0, 0], gray["pixel_values"][0, 2])


def test_mean_std_per_channel():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    processor = FerImageProcessor(size=8, num_channels=3, image_mean=mean, image_std=std)
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    out = processor(white, return_tensors="np")["pixel_values"][0]
    for c in range(3):
        assert np.allclose(out[c], (1 - mean[c]) / std[c], atol=1e-5)


def test_arrays_tensors_and_pil_agree():
    processor = FerImageProcessor(size=40, num_channels=3)
    image = face()
    hwc = np.asarray(image)
    reference = processor(image, return_tensors="np")["pixel_values"]
    for variant in (hwc, hwc.transpose(2, 0, 1), torch.from_numpy(hwc.copy()), hwc / 255.0):
        assert np.allclose(processor(variant, return_tensors="np")["pixel_values"], reference)
    rgba = np.concatenate([hwc, np.full(hwc.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    assert np.allclose(processor(rgba, return_tensors="np")["pixel_values"], reference)
    gray_2d = np.asarray(image.convert("L"))
    out = processor(gray_2d, return_tensors="np")["pixel_values"]
    assert out.shape == (1, 3, 40, 40)


def test_batches_and_does_not_modify_the_input():
    processor = FerImageProcessor(size=16, num_channels=1, do_grayscale=True)
    arrays = [np.asarray(face()).copy(), np.asarray(face(colour=False)).copy()]
    before = [a.copy() for a in arrays]
    out = processor(arrays, return_tensors="pt")["pixel_values"]
    assert out.shape == (2, 1, 16, 16)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before, strict=True))


def test_bad_inputs():
    processor = FerImageProcessor(size=16)
    with pytest.raises(ValueError, match=r"must have 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels"):
        processor(np.zeros((20, 20, 5), np.uint8))
    with pytest.raises(ValueError, match="`num_channels` must be 1 or 3, got 2"):
        FerImageProcessor(num_channels=2)
    with pytest.raises(ValueError, match=r"`image_mean` must have one value per channel \(1\)"):
        FerImageProcessor(num_channels=1, image_mean=[0.5, 0.5, 0.5], image_std=[0.5])
    with pytest.raises(ValueError, match="`image_std` values must be positive"):
        FerImageProcessor(num_channels=1, image_std=[0.0])


def test_centre_crop_of_the_resized_face():
    face_array = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    whole = FerImageProcessor(num_channels=1)(face_array, return_tensors="np")["pixel_values"]
    processor = FerImageProcessor(num_channels=1, crop_size=40)
    assert processor.output_size == {"height": 40, "width": 40}
    cropped = processor(face_array, return_tensors="np")["pixel_values"]
    assert cropped.shape == (1, 1, 40, 40)
    np.testing.assert_array_equal(cropped, whole[..., 4:44, 4:44])  # the centre, unscaled
    skipped = processor(face_array, do_center_crop=False, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(skipped, whole)
    with pytest.raises(ValueError, match="crop_size"):
        FerImageProcessor(size=48, crop_size=49)


def test_save_and_load(tmp_path):
    processor = FerImageProcessor(size=24, num_channels=1, do_grayscale=True, image_mean=[0.4])
    processor.save_pretrained(tmp_path)
    again = FerImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    assert np.array_equal(
        again(face(), return_tensors="np")["pixel_values"],
        processor(face(), return_tensors="np")["pixel_values"],
    )
    assert (tmp_path / "image_processing_fer.py").exists()
