"""Train augmentation and eval preprocessing: match the processor, stay in range, are seeded."""

import numpy as np
import pytest
import torch
from PIL import Image

from fer_hf.models import FerImageProcessor
from fer_hf.training.transforms import Augmentation, FerTransform, collate, convert_pixel_values

IDENTITY = Augmentation(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    hflip_prob=0.0,
    rotation_degrees=0.0,
    brightness=0.0,
    contrast=0.0,
    erasing_prob=0.0,
)
GRAY = FerImageProcessor(size=48, num_channels=1, do_grayscale=True)
RGB = FerImageProcessor(
    size=64, num_channels=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
)


def batch(count=6, mode="L", size=(40, 52), seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(count)]
    return {
        "image": images,
        "label": list(range(count)),
        "valence": [0.5] * count,
        "arousal": [float("nan")] * count,
    }


@pytest.mark.parametrize("processor", [GRAY, RGB], ids=["gray48", "rgb64"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_identity_augmentation_equals_the_processor(processor, mode):
    records = batch(mode=mode)
    augmented = FerTransform(processor, IDENTITY)(records)["pixel_values"]
    processed = torch.as_tensor(np.stack(processor(records["image"])["pixel_values"]))
    assert (
        augmented.shape
        == processed.shape
        == (6, processor.num_channels, *([processor.size["height"]] * 2))
    )
    torch.testing.assert_close(augmented, processed, atol=1e-5, rtol=0)


def test_eval_transform_is_the_processor_and_deterministic():
    records = batch()
    first, second = FerTransform(GRAY)(records), FerTransform(GRAY)(records)
    torch.testing.assert_close(first["pixel_values"], second["pixel_values"])
    assert first["labels"].dtype == torch.long and first["labels"].tolist() == list(range(6))
    assert first["valence"].tolist() == [0.5] * 6 and torch.isnan(first["arousal"]).all()


def test_augmentation_is_random_seeded_and_in_range():
    records = batch(count=16)
    transform = FerTransform(GRAY, Augmentation(erasing_prob=1.0))
    torch.manual_seed(3)
    a = transform(records)["pixel_values"]
    torch.manual_seed(3)
    b = transform(records)["pixel_values"]
    c = transform(records)["pixel_values"]
    torch.testing.assert_close(a, b)  # the Trainer's seed (and resume) reproduce the batch
    assert not torch.equal(a, c)
    # Normalised with mean = std = 0.5: pixels in [-1, 1]; erasing writes 0 (= the mean).
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6
    assert ((a == 0).flatten(1).sum(1) > 0).all()  # every image got its rectangle


def test_flip_only_mirrors():
    records = batch(count=8)
    flip_all = Augmentation(**{**IDENTITY.__dict__, "hflip_prob": 1.0})
    flipped = FerTransform(GRAY, flip_all)(records)["pixel_values"]
    plain = FerTransform(GRAY, IDENTITY)(records)["pixel_values"]
    torch.testing.assert_close(flipped, plain.flip(-1), atol=1e-5, rtol=0)


def test_records_without_affect_get_nan_and_collate_stacks():
    records = batch(count=3)
    del records["valence"], records["arousal"]
    out = FerTransform(GRAY)(records)
    rows = [{key: value[i] for key, value in out.items()} for i in range(3)]
    stacked = collate(rows)
    assert stacked["pixel_values"].shape == (3, 1, 48, 48)
    assert torch.isnan(stacked["valence"]).all() and stacked["labels"].tolist() == [0, 1, 2]


def test_convert_pixel_values_gives_a_crop_trained_teacher_its_centre_crop():
    whole = FerImageProcessor(size=48, num_channels=1)
    teacher = FerImageProcessor(size=48, num_channels=1, crop_size=40)
    faces = [np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8) for i in range(3)]
    student_batch = whole(faces, return_tensors="pt")["pixel_values"]
    expected = teacher(faces, return_tensors="pt")["pixel_values"]  # its centre crops
    converted = convert_pixel_values(student_batch, whole, teacher)
    torch.testing.assert_close(converted, expected, atol=1e-5, rtol=0)
    crops = student_batch[..., 4:44, 4:44]  # random 40 px crops from a crop-trained student
    torch.testing.assert_close(convert_pixel_values(crops, teacher, teacher), crops)


def test_convert_pixel_values_centre_crops_a_larger_crop_at_the_teachers_scale():
    student = FerImageProcessor(size=48, num_channels=1, crop_size=44)  # trained on 44 px crops
    teacher = FerImageProcessor(size=48, num_channels=1, crop_size=40)
    faces = [np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8) for i in range(3)]
    whole = FerImageProcessor(size=48, num_channels=1)(faces, return_tensors="pt")["pixel_values"]
    crops = whole[..., 1:45, 3:47]  # random 44 px crops of the same 48 px faces
    converted = convert_pixel_values(crops, student, teacher)
    # The teacher's 40 px centre of the 44 px crop, pixel for pixel: not the crop shrunk to 40.
    torch.testing.assert_close(converted, whole[..., 3:43, 5:45], atol=1e-5, rtol=0)
    # Faces resized to another size are a different scale: resized to what the teacher takes.
    other = FerImageProcessor(size=64, num_channels=1, crop_size=56)
    big = other(faces, return_tensors="pt")["pixel_values"]
    resized = convert_pixel_values(big, other, teacher)
    assert resized.shape == (3, 1, 40, 40)
    assert not torch.allclose(resized, big[..., 8:48, 8:48])


def test_convert_pixel_values_matches_the_other_processor():
    images = batch(mode="L", size=(48, 48))["image"]
    gray = torch.as_tensor(np.stack(GRAY(images)["pixel_values"]))
    rgb48 = FerImageProcessor(
        size=48, num_channels=3, image_mean=RGB.image_mean, image_std=RGB.image_std
    )
    expected = torch.as_tensor(np.stack(rgb48(images)["pixel_values"]))
    torch.testing.assert_close(convert_pixel_values(gray, GRAY, rgb48), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(convert_pixel_values(expected, rgb48, GRAY), gray, atol=1e-5, rtol=0)
    assert convert_pixel_values(gray, GRAY, RGB).shape == (6, 3, 64, 64)
