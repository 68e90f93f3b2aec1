"""The fast training path: decode cache (built, reused, invalidated, truncated), whole-batch
augmentation (shapes, ranges, seeded determinism, flip/crop semantics against the per-sample
transform), precision per kind and the bf16 fallback, SGD Nesterov, ten-crop TTA and ensembles."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from helpers_training import prepared_dataset
from test_training_transforms import IDENTITY

from fer_hf.data import load_prepared
from fer_hf.data.decoded import decoded_images
from fer_hf.models import build_model, tiny_config
from fer_hf.training import precision as precision_module
from fer_hf.training.augment import BatchAugmenter, normalize_uint8
from fer_hf.training.batches import UInt8Collator, decoded_split
from fer_hf.training.evaluation import evaluate_model, tta_views
from fer_hf.training.precision import apply_precision, resolve_precision
from fer_hf.training.transforms import Augmentation, FerTransform

# No randomness except the one under test (the per-sample transform's tests use the same).
STILL = IDENTITY


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_dataset(tmp_path_factory.mktemp("fast"))


@pytest.fixture(scope="module")
def splits(prepared):
    return load_prepared(prepared)


def _processor(kind="factorized", size=32, **extra):
    return build_model(kind, image_size=size, backbone_config=tiny_config(kind, size), **extra)[1]


# --- decode cache -------------------------------------------------------------------------------


def test_cache_built_equals_the_processor_and_is_reused(splits, tmp_path, caplog):
    split = splits["validation"]
    processor = _processor()
    with caplog.at_level(logging.INFO, logger="fer_hf.data.decoded"):
        array = decoded_images(split, tmp_path, "validation", (32, 32), "L", progress=False)
    assert array.shape == (len(split), 32, 32, 1) and array.dtype == np.uint8
    assert isinstance(array, np.memmap) and not array.flags.writeable
    assert "no cache yet" in caplog.text
    # The processor on the cached arrays = the processor on the original images, exactly.
    from_cache = normalize_uint8(torch.from_numpy(np.array(array[:5])), processor)
    original = processor(split[:5]["image"], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(from_cache, original, rtol=0, atol=1e-6)

    caplog.clear()
    path = tmp_path / "validation-32x32-L.npy"
    mtime = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="fer_hf.data.decoded"):
        again = decoded_images(split, tmp_path, "validation", (32, 32), "L", progress=False)
    assert "Decoding" not in caplog.text and path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again, array)


def test_cache_invalidated_when_the_split_changes(splits, tmp_path, caplog):
    split = splits["validation"]
    decoded_images(split, tmp_path, "validation", (32, 32), "L", progress=False)
    changed = split.select(range(len(split) - 3))  # another split under the same name
    with caplog.at_level(logging.INFO, logger="fer_hf.data.decoded"):
        array = decoded_images(changed, tmp_path, "validation", (32, 32), "L", progress=False)
    assert "the split changed" in caplog.text
    assert array.shape[0] == len(changed)


@pytest.mark.parametrize("damage", ["truncate", "drop-record", "garbage-record"])
def test_damaged_cache_is_detected_and_rebuilt(splits, tmp_path, caplog, damage):
    split = splits["validation"]
    first = np.array(decoded_images(split, tmp_path, "validation", (32, 32), "L", progress=False))
    array_path = tmp_path / "validation-32x32-L.npy"
    record_path = tmp_path / "validation-32x32-L.json"
    if damage == "truncate":
        with open(array_path, "r+b") as f:
            f.truncate(array_path.stat().st_size - 100)
        expected = "truncated"
    elif damage == "drop-record":
        record_path.unlink()
        expected = "record is missing"
    else:
        record_path.write_text("{not json")
        expected = "unreadable"
    with caplog.at_level(logging.INFO, logger="fer_hf.data.decoded"):
        rebuilt = decoded_images(split, tmp_path, "validation", (32, 32), "L", progress=False)
    assert expected in caplog.text
    np.testing.assert_array_equal(rebuilt, first)
    assert json.loads(record_path.read_text())["nbytes"] == array_path.stat().st_size


def test_cache_resizes_and_converts_like_the_processor(splits, tmp_path):
    split = splits["validation"]
    processor = _processor("baseline", size=40)  # RGB, 40 px from 32 px gray images
    faces = decoded_split(split, split, None, tmp_path, "validation", processor)
    batch = UInt8Collator(faces.array_path)([faces[i] for i in (3, 0, 2)])
    assert batch["images"].shape == (3, 40, 40, 3)
    expected = processor([split[i]["image"] for i in (3, 0, 2)], return_tensors="pt")
    torch.testing.assert_close(
        normalize_uint8(batch["images"], processor), expected["pixel_values"], rtol=0, atol=1e-6
    )
    assert batch["labels"].tolist() == [split[i]["label"] for i in (3, 0, 2)]
    # a crop-trained model's processor: decoded at its full size, centre-cropped like its PIL path
    processor.crop_size = {"height": 33, "width": 30}
    expected = processor([split[i]["image"] for i in (3, 0, 2)], return_tensors="pt")
    assert expected["pixel_values"].shape == (3, 3, 33, 30)
    torch.testing.assert_close(
        normalize_uint8(batch["images"], processor), expected["pixel_values"], rtol=0, atol=1e-6
    )


def test_views_index_rows_of_the_whole_split(splits, tmp_path):
    split = splits["train"]
    rows = np.array([5, 5, 1, 9])  # a resampled view: repeats, any order
    view = split.select(rows)
    faces = decoded_split(split, view, rows, tmp_path, "train", _processor())
    batch = UInt8Collator(faces.array_path)([faces[i] for i in range(len(faces))])
    whole = np.load(tmp_path / "train-32x32-L.npy")
    np.testing.assert_array_equal(batch["images"].numpy(), whole[rows])
    assert batch["labels"].tolist() == view["label"]
    with pytest.raises(ValueError, match="rows for a view"):
        decoded_split(split, view, rows[:2], tmp_path, "train", _processor())


# --- batched augmentation -----------------------------------------------------------------------


def _uint8_batch(count=8, size=32, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8))


def test_shapes_ranges_and_seeded_determinism():
    processor = _processor()
    augmenter = BatchAugmenter(processor, Augmentation())
    images = _uint8_batch()
    torch.manual_seed(3)
    first = augmenter(images)
    torch.manual_seed(3)
    second = augmenter(images)
    torch.manual_seed(4)
    other = augmenter(images)
    assert first.shape == (8, 1, 32, 32) and first.dtype == torch.float32
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first, other)
    low, high = (0 - 0.5) / 0.5, (1 - 0.5) / 0.5  # the processor's mean/std are 0.5
    assert first.min() >= low - 1e-6 and first.max() <= high + 1e-6
    with pytest.raises(ValueError, match="uint8"):
        augmenter(images.float())


def test_gray_to_rgb_model_and_crop_sizes():
    processor = _processor("baseline", size=32)  # 3 channels, ImageNet normalisation
    out = BatchAugmenter(processor, Augmentation())(_uint8_batch())
    assert out.shape == (8, 3, 32, 32)
    cropped = BatchAugmenter(_processor(), Augmentation(), crop_size=28)(_uint8_batch())
    assert cropped.shape == (8, 1, 28, 28)
    with pytest.raises(ValueError, match="crop_size"):
        BatchAugmenter(_processor(), Augmentation(), crop_size=40)


@pytest.mark.parametrize("flip", [0.0, 1.0], ids=["identity", "flip"])
def test_flip_and_identity_match_the_per_sample_transform(flip, splits):
    split = splits["validation"]
    processor = _processor()
    aug = Augmentation(**{**STILL.__dict__, "hflip_prob": flip})
    records = split[:6]
    per_sample = FerTransform(processor, aug)(records)["pixel_values"]
    images = torch.from_numpy(np.stack([np.asarray(im)[..., None] for im in records["image"]]))
    batched = BatchAugmenter(processor, aug)(images)
    torch.testing.assert_close(batched, per_sample, rtol=0, atol=1e-4)
    plain = processor(records["image"], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batched, plain.flip(-1) if flip else plain, rtol=0, atol=1e-4)


def test_random_resized_crop_zooms_like_the_per_sample_crop():
    """A fixed-area crop magnifies the image: the horizontal frequency of a vertical grating
    drops by the same factor on both paths."""
    processor = _processor(size=48)
    x = np.arange(48)
    grating = ((np.sin(2 * np.pi * x / 8) > 0) * 255).astype(np.uint8)
    image = np.tile(grating, (48, 1))
    aug = Augmentation(**{**STILL.__dict__, "crop_scale": (0.25, 0.25)})

    def period(batch):  # mean distance between rising edges along each row
        rows = (batch[:, 0] > 0).numpy()
        edges = [np.flatnonzero(np.diff(row.astype(int)) == 1) for row in rows.reshape(-1, 48)]
        return np.mean([np.diff(e).mean() for e in edges if len(e) > 1])

    torch.manual_seed(0)
    batched = BatchAugmenter(processor, aug)(torch.from_numpy(np.stack([image[..., None]] * 8)))
    from PIL import Image

    per_sample = FerTransform(processor, aug)(
        {"image": [Image.fromarray(image)] * 8, "label": [0] * 8}
    )["pixel_values"]
    assert period(batched) == pytest.approx(16, rel=0.1)  # half the side: 2x zoom
    assert period(per_sample) == pytest.approx(16, rel=0.1)


def test_fixed_crops_are_unscaled_windows():
    processor = _processor(size=32)
    aug = STILL
    ramp = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))  # value = 8 * column
    out = BatchAugmenter(processor, aug, crop_size=24)(
        torch.from_numpy(np.stack([ramp[..., None]] * 16))
    )
    pixels = (out[:, 0] * 0.5 + 0.5) * 255  # undo the normalisation
    steps = pixels[:, :, 1:] - pixels[:, :, :-1]
    torch.testing.assert_close(steps, torch.full_like(steps, 8.0), rtol=0, atol=1e-3)
    starts = pixels[:, 0, 0] / 8  # the crop's left column, anywhere in [0, 8]
    assert starts.min() >= -1e-3 and starts.max() <= 8 + 1e-3 and starts.std() > 0.5


def test_erasing_blanks_one_rectangle_of_the_configured_area():
    processor = _processor(size=32)
    aug = Augmentation(**{**STILL.__dict__, "erasing_prob": 1.0})
    images = torch.full((64, 32, 32, 1), 255, dtype=torch.uint8)  # white: erased pixels stand out
    out = BatchAugmenter(processor, aug)(images)
    erased = (out[:, 0] == 0).float().mean(dim=(1, 2))
    assert erased.min() > 0.005 and erased.max() < 0.3
    assert erased.mean() == pytest.approx(0.11, abs=0.05)  # mean of U(0.02, 0.2)


def test_augmentation_runs_on_the_batch_device():
    # The same code runs on a GPU batch; on CPU we check that nothing leaves the device.
    images = _uint8_batch()
    out = BatchAugmenter(_processor(), Augmentation())(images)
    assert out.device == images.device


# --- precision per kind -------------------------------------------------------------------------


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx2", "fma"})


@pytest.fixture
def cpu_with_amx(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512f", "amx_bf16"})


def test_auto_precision_per_kind_with_native_bf16(cpu_with_amx):
    assert resolve_precision("baseline", "auto", "auto").bf16
    assert resolve_precision("vit", "auto", "auto").bf16
    factorized = resolve_precision("factorized", "auto", "auto")
    assert not factorized.bf16 and factorized.channels_last
    for factorization, dense in [("depthwise", False), ("both", False), ("spatial", True)]:
        chosen = resolve_precision("factorized", "auto", "auto", "cpu", factorization)
        assert chosen.bf16 is dense and chosen.channels_last
    assert not resolve_precision("factorized", "fp32", "auto", "cpu", "spatial").bf16
    assert not resolve_precision("vit", "auto", "auto").channels_last
    assert resolve_precision("baseline", "auto", "auto").channels_last
    assert not resolve_precision("baseline", "auto", "false").channels_last


def test_bf16_vit_trains_with_eager_attention_on_cpu(cpu_with_amx, tmp_path):
    chosen = resolve_precision("vit", "auto", "auto")
    assert chosen.bf16 and chosen.attention == "eager"
    assert resolve_precision("vit", "fp32", "auto").attention is None  # SDPA is faster in fp32
    assert resolve_precision("baseline", "auto", "auto").attention is None
    torch.manual_seed(0)
    model, _ = build_model("vit", image_size=32, backbone_config=tiny_config("vit"))
    model.eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values=pixels).logits
        apply_precision(model, chosen)
        after = model(pixel_values=pixels).logits
    assert model.backbone.config._attn_implementation == "eager"
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)  # the same function
    model.save_pretrained(tmp_path)  # the training-time choice is not saved with the model
    assert "eager" not in (tmp_path / "config.json").read_text()


def test_bf16_falls_back_to_fp32_with_one_log_line(cpu_without_bf16, caplog):
    with caplog.at_level(logging.INFO, logger="fer_hf.training.precision"):
        chosen = resolve_precision("baseline", "auto", "auto")
    assert not chosen.bf16 and chosen.dtype == "float32"
    assert len(caplog.records) == 1 and "no native bf16" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fer_hf.training.precision"):
        forced = resolve_precision("baseline", "bf16", "auto")
    assert forced.bf16 and "emulated" in caplog.text
    assert not resolve_precision("vit", "fp32", "auto").bf16


def test_sgd_gets_momentum_and_nesterov(tmp_path):
    from fer_hf.training.arguments import parse_args
    from fer_hf.training.trainer import FerTrainer

    _, _, args = parse_args(
        ["--dataset", "x", "--output_dir", str(tmp_path), "--optim", "sgd", "--use_cpu", "true"]
    )
    optimizer_cls, kwargs = FerTrainer.get_optimizer_cls_and_kwargs(args)
    assert optimizer_cls is torch.optim.SGD
    assert kwargs["momentum"] == 0.9 and kwargs["nesterov"] is True


# --- evaluation: ten-crop, ensembles ------------------------------------------------------------


def test_tencrop_views():
    batch = torch.arange(2 * 48 * 48, dtype=torch.float32).view(2, 1, 48, 48)
    views = tta_views(batch, "tencrop")
    assert len(views) == 10 and all(v.shape == (2, 1, 48, 48) for v in views)

    def resized(crop):
        return torch.nn.functional.interpolate(crop, size=(48, 48), mode="bilinear")

    torch.testing.assert_close(views[0], resized(batch[..., :40, :40]))
    torch.testing.assert_close(views[1], resized(batch[..., :40, :40]).flip(-1))
    torch.testing.assert_close(views[6], resized(batch[..., 8:, 8:]))
    torch.testing.assert_close(views[8], resized(batch[..., 4:44, 4:44]))
    assert len(tta_views(batch, "flip")) == 2 and len(tta_views(batch, "none")) == 1


def test_tencrop_views_of_a_crop_trained_model_are_unscaled():
    batch = torch.arange(2 * 48 * 48, dtype=torch.float32).view(2, 1, 48, 48)
    views = tta_views(batch, "tencrop", crop_size=40)
    assert len(views) == 10 and all(v.shape == (2, 1, 40, 40) for v in views)
    torch.testing.assert_close(views[0], batch[..., :40, :40])
    torch.testing.assert_close(views[7], batch[..., 8:, 8:].flip(-1))
    torch.testing.assert_close(views[8], batch[..., 4:44, 4:44])
    # A crop no smaller than the input falls back to the resized fraction.
    assert all(v.shape == (2, 1, 48, 48) for v in tta_views(batch, "tencrop", crop_size=48))


def test_training_on_crops_records_the_crop_size(tmp_path):
    from fer_hf.models import FerConfig

    with pytest.raises(ValueError, match="train_crop_size"):
        FerConfig(train_crop_size=0)
    config = FerConfig(train_crop_size=40)
    config.save_pretrained(tmp_path)
    assert FerConfig.from_pretrained(tmp_path).train_crop_size == 40
    assert FerConfig().train_crop_size is None


def _save_tiny(folder, seed):
    torch.manual_seed(seed)
    model, processor = build_model(
        "factorized", image_size=32, backbone_config=tiny_config("factorized", 32)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_ensemble_averages_the_models_probabilities(prepared, tmp_path):
    a, b = _save_tiny(tmp_path / "a", 0), _save_tiny(tmp_path / "b", 1)
    single = [
        evaluate_model(m, prepared, tmp_path / f"out-{m.name}", split="validation") for m in (a, b)
    ]
    both = evaluate_model([a, b], prepared, tmp_path / "out-ab", split="validation", tta="tencrop")
    assert both["ensemble"] == 2 and isinstance(both["model"], list) and both["tta"] == "tencrop"
    assert single[0]["ensemble"] == 1 and isinstance(single[0]["model"], str)
    assert both["n"] == single[0]["n"]
    assert (tmp_path / "out-ab" / "confusion_matrix.png").is_file()


def test_ensemble_takes_one_tta_mode_per_model(prepared, tmp_path):
    from fer_hf.data import load_eval_split
    from fer_hf.models import label_names, load_model_folder
    from fer_hf.training.evaluation import predict

    a, b = _save_tiny(tmp_path / "a", 0), _save_tiny(tmp_path / "b", 1)
    mixed = evaluate_model(
        [a, b], prepared, tmp_path / "mixed", split="validation", tta=["tencrop", "flip"]
    )
    assert mixed["tta"] == ["tencrop", "flip"]
    # The ensemble's prediction is the mean of model a's ten-crop and model b's flip probabilities.
    probabilities = []
    for folder, mode in ((a, "tencrop"), (b, "flip")):
        model, processor = load_model_folder(folder)
        dataset, _ = load_eval_split(prepared, "validation", label_names(model.config))
        probabilities.append(predict(model, processor, dataset, tta=mode)[0])
        labels = predict(model, processor, dataset)[2]
    by_hand = np.mean(probabilities, axis=0).argmax(-1)
    assert mixed["accuracy"] == pytest.approx(float((by_hand == labels).mean()))
    matrix = np.zeros((7, 7), dtype=int)
    np.add.at(matrix, (labels, by_hand), 1)
    assert mixed["confusion_matrix"]["matrix"] == matrix.tolist()
    # One mode for all is recorded as that mode; a wrong count or mode is refused by name.
    same = evaluate_model([a, b], prepared, tmp_path / "s", split="validation", tta=["flip"])
    assert same["tta"] == "flip"
    with pytest.raises(ValueError, match="lists 3 modes .* for 2 models"):
        evaluate_model([a, b], prepared, tmp_path / "x", split="validation", tta=["flip"] * 3)
    with pytest.raises(ValueError, match="Unknown --tta 'fivecrop'"):
        evaluate_model([a, b], prepared, tmp_path / "x", split="validation", tta="fivecrop")
    assert not (tmp_path / "x").exists()


def test_evaluate_cli_parses_per_model_tta(capsys):
    from fer_hf.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["evaluate", "a", "b", "data", "--tta", "tencrop,flip", "--output", "o"]
    )
    assert args.tta == ["tencrop", "flip"]
    assert parser.parse_args(["evaluate", "a", "data", "--output", "o"]).tta == ["none"]
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "a", "data", "--tta", "flip,mirror", "--output", "o"])
    assert "unknown mode 'mirror'" in capsys.readouterr().err


def test_ensemble_of_other_label_schemas_is_refused(prepared, tmp_path):
    a = _save_tiny(tmp_path / "a", 0)
    model, processor = build_model(
        "factorized", image_size=32, num_classes=8, backbone_config=tiny_config("factorized", 32)
    )
    model.save_pretrained(tmp_path / "b8")
    processor.save_pretrained(tmp_path / "b8")
    with pytest.raises(ValueError, match="one label schema"):
        evaluate_model([a, tmp_path / "b8"], prepared, tmp_path / "o", split="validation")


def test_throughput_bench_prints_the_compare_document():
    """`bench/train_throughput.py --compare` (its interface; 1 step, factorized only)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    process = subprocess.run(
        [
            sys.executable,
            str(repo / "bench" / "train_throughput.py"),
            "--compare",
            "--kinds",
            "factorized",
            "--threads",
            "1",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--rounds",
            "1",
            "--batch-size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert process.returncode == 0, process.stderr[-2000:]
    document = json.loads(process.stdout)
    result = document["kinds"]["factorized"]
    assert result["reference"]["images_per_s"] > 0 and result["fast"]["images_per_s"] > 0
    assert result["fast"]["dtype"] == "float32"  # bf16 is slower for this kind
    assert result["fast"]["memory_format"] == "channels_last"
    assert result["speedup"] == pytest.approx(
        result["fast"]["images_per_s"] / result["reference"]["images_per_s"], abs=0.01
    )
    assert result["pipeline_to_model"] > 0
    assert {"cpu", "native_bf16", "amx_bf16"} <= set(document["machine"])


# --- FER-sized stems ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("baseline", {"stem": "small", "num_channels": 1, "grayscale": True}),
        ("vit", {"stem": "small", "pooling": "mean", "patch_size": 8}),
    ],
    ids=["resnet-small-stem", "vit-conv-tokeniser"],
)
def test_small_stems_round_trip(kind, overrides, tmp_path):
    from transformers import AutoModelForImageClassification

    from fer_hf.models import register
    from fer_hf.models.modeling_fer import ConvTokenizer

    torch.manual_seed(0)
    model, processor = build_model(kind, image_size=48, **overrides)
    model.eval()
    if kind == "baseline":
        conv = model.backbone.embedder.embedder.convolution
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        hidden = model(torch.randn(1, 1, 48, 48), output_hidden_states=True).hidden_states
        assert hidden[0].shape[-1] == 24  # first stage at 24x24 (12x12 with the ImageNet stem)
    else:
        assert isinstance(model.backbone.embeddings.patch_embeddings.projection, ConvTokenizer)
        hidden = model(torch.randn(1, 3, 48, 48), output_hidden_states=True).hidden_states
        assert hidden[-1].shape[1] == 1 + 36  # [CLS] + 6x6 tokens of 8 px
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    register()
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    x = torch.randn(2, model.config.num_channels, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_mean_pooling_is_the_mean_of_the_patch_tokens():
    torch.manual_seed(0)
    model, _ = build_model("vit", image_size=48, pooling="mean", patch_size=8)
    model.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        tokens = model.backbone(x).last_hidden_state
        expected = model.classifier(tokens[:, 1:].mean(dim=1))
        torch.testing.assert_close(model(x).logits, expected)


@pytest.mark.parametrize(
    "kind, overrides, message",
    [
        ("factorized", {"stem": "small"}, "factorized backbone sizes its own stem"),
        ("baseline", {"pooling": "mean"}, "applies to ViT backbones"),
        ("vit", {"stem": "small"}, "power-of-two `patch_size`"),  # vit-tiny at 48 px: patch 6
        ("baseline", {"stem": "tiny"}, "Unknown `stem`"),
    ],
)
def test_stem_and_pooling_errors(kind, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(kind, image_size=48, **overrides)
