"""Mixup / CutMix (`--mixup_alpha`, `--cutmix_alpha`, `--mix_prob`): the batch mixing, the loss it
weights, the argument checks, and a tiny training run with both and a teacher."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers_training import prepared_dataset, save_tiny_model
from test_training_run import flags, run

from fer_hf.training.arguments import parse_args
from fer_hf.training.augment import mix_pairs
from fer_hf.training.trainer import FerTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(count: int = 6, size: int = 16) -> torch.Tensor:
    return torch.randn(count, 1, size, size, generator=torch.Generator().manual_seed(3))


def test_mixup_blends_each_image_with_its_partner():
    x = batch()
    torch.manual_seed(0)
    mixed, lam = mix_pairs(x, mixup_alpha=0.4, cutmix_alpha=0.0)
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
    torch.manual_seed(0)
    again, lam_again = mix_pairs(x, mixup_alpha=0.4, cutmix_alpha=0.0)
    assert lam_again == lam and torch.equal(again, mixed)  # seeded: reproducible


def test_cutmix_pastes_one_box_whose_area_sets_lam():
    x = batch()
    seen_boxes = set()
    for seed in range(20):
        torch.manual_seed(seed)
        mixed, lam = mix_pairs(x, mixup_alpha=0.0, cutmix_alpha=1.0)
        from_partner = (mixed == x.flip(0)) & (mixed != x)  # (B, 1, H, W)
        # Every image takes the same box from its partner (the middle pairs would be identical
        # for an odd batch; here B is even, so every pixel tells).
        box = from_partner[0, 0]
        assert all(torch.equal(from_partner[i, 0], box) for i in range(len(x)))
        assert torch.equal(mixed[~from_partner], x[~from_partner])
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        if len(rows):  # a rectangle: every pixel of its bounding box is pasted
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            seen_boxes.add((int(rows.min()), int(cols.min()), len(rows), len(cols)))
        assert lam == pytest.approx(1 - box.float().mean().item(), abs=1e-6)
    assert len(seen_boxes) > 10  # boxes move and change size


def test_both_alphas_draw_both_methods_and_keep_channels_last():
    x = batch(4, 8).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
    kinds = set()
    torch.manual_seed(0)
    for _ in range(30):
        mixed, lam = mix_pairs(x, mixup_alpha=0.8, cutmix_alpha=1.0)
        assert mixed.is_contiguous(memory_format=torch.channels_last)
        exact = (mixed == x) | (mixed == x.flip(0))
        kinds.add("cutmix" if bool(exact.all()) else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_mix_pairs_refuses_no_mixing():
    with pytest.raises(ValueError, match="needs mixup_alpha or cutmix_alpha > 0"):
        mix_pairs(batch(), 0.0, 0.0)


def fake_trainer(imbalance: str = "none", smoothing: float = 0.1, class_weights=None):
    args = SimpleNamespace(
        imbalance=imbalance,
        label_smoothing_factor=smoothing,
        focal_gamma=2.0,
        distillation_alpha=0.5,
        distillation_temperature=4.0,
        mixup_alpha=0.4,
        cutmix_alpha=0.0,
    )
    trainer = SimpleNamespace(args=args, class_weights=class_weights)
    trainer._label_loss = lambda logits, labels: FerTrainer._label_loss(trainer, logits, labels)
    return trainer


@pytest.mark.parametrize("imbalance", ["none", "focal"])
def test_mixed_loss_weights_the_two_labels_by_lam(imbalance):
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.0, 3.0, 1.0])
    trainer = fake_trainer(imbalance, class_weights=weights)
    logits = torch.randn(6, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 5, 6])
    outputs = SimpleNamespace(logits=logits, valence_arousal=None)
    inputs = {"labels": labels}
    own = FerTrainer._task_loss(trainer, None, outputs, inputs, None)
    partner = FerTrainer._task_loss(trainer, None, outputs, {"labels": labels.flip(0)}, None)
    mixed = FerTrainer._task_loss(trainer, None, outputs, inputs, None, lam=0.3)
    torch.testing.assert_close(mixed, 0.3 * own + 0.7 * partner)
    if imbalance == "none":
        expected = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1)
        torch.testing.assert_close(own, expected)
    # The distillation term is the teacher's on the mixed images, not mixed again.
    teacher = torch.randn(6, 7, generator=torch.Generator().manual_seed(1))
    with_teacher = FerTrainer._task_loss(trainer, None, outputs, inputs, teacher, lam=0.3)
    kd = (
        F.kl_div(
            F.log_softmax(logits / 4, -1),
            F.log_softmax(teacher / 4, -1),
            reduction="batchmean",
            log_target=True,
        )
        * 16
    )
    torch.testing.assert_close(with_teacher, 0.5 * kd + 0.5 * mixed)


def test_mixed_batch_blends_valence_arousal_and_keeps_labels():
    trainer = SimpleNamespace(args=SimpleNamespace(mixup_alpha=0.5, cutmix_alpha=0.0))
    inputs = {
        "pixel_values": batch(4, 8),
        "labels": torch.tensor([0, 1, 2, 3]),
        "valence": torch.tensor([0.5, float("nan"), -0.5, 0.25]),
        "arousal": torch.tensor([0.1, 0.2, 0.3, 0.4]),
    }
    torch.manual_seed(0)
    mixed, lam = FerTrainer._mixed(trainer, inputs)
    assert torch.equal(mixed["labels"], inputs["labels"])
    expected_valence = torch.tensor([0.5 * lam + 0.25 * (1 - lam), float("nan"), float("nan"), 0])
    expected_valence[3] = 0.25 * lam + 0.5 * (1 - lam)
    torch.testing.assert_close(mixed["valence"], expected_valence, equal_nan=True)
    torch.testing.assert_close(
        mixed["arousal"], lam * inputs["arousal"] + (1 - lam) * inputs["arousal"].flip(0)
    )
    assert inputs["pixel_values"] is not mixed["pixel_values"]  # the caller's batch is untouched


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mixup_alpha", "-0.1"], "`mixup_alpha` must be a finite number >= 0"),
        (["--cutmix_alpha", "inf"], "`cutmix_alpha` must be a finite number >= 0"),
        (["--mixup_alpha", "0.2", "--mix_prob", "1.5"], r"`mix_prob` must be in \[0, 1\]"),
        (["--mix_prob", "0.5"], "needs `mixup_alpha` or `cutmix_alpha` > 0"),
    ],
)
def test_bad_mixing_arguments_are_refused(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        parse_args(["--dataset", "data", "--output_dir", str(tmp_path), *extra])


def test_training_with_mixup_cutmix_and_a_teacher(tmp_path):
    data = prepared_dataset(tmp_path / "data")
    teacher = save_tiny_model(tmp_path / "teacher")
    mixing = ["--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--mix_prob", "0.9"]
    distilled = ["--max_steps", "4", "--teacher_model", str(teacher)]
    summary = run(flags(data, tmp_path / "run", *distilled, *mixing))
    loss = summary["hyperparameters"]["loss"]
    assert (loss["mixup_alpha"], loss["cutmix_alpha"], loss["mix_prob"]) == (0.8, 1.0, 0.9)
    assert summary["global_step"] == 4 and summary["train_loss"] > 0
    plain = run(flags(data, tmp_path / "plain", "--max_steps", "1"))
    assert "mixup_alpha" not in plain["hyperparameters"]["loss"]
