"""Focal and distillation losses against hand-computed values; the class-balanced sampler."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_hf.training.losses import (
    ClassBalancedSampler,
    distillation_loss,
    ensemble_teacher_logits,
    focal_loss,
)

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]])
LABELS = torch.tensor([0, 2, 1])


def test_focal_with_gamma_zero_is_cross_entropy():
    weight = torch.tensor([1.0, 2.0, 0.5])
    torch.testing.assert_close(
        focal_loss(LOGITS, LABELS, gamma=0.0), F.cross_entropy(LOGITS, LABELS)
    )
    torch.testing.assert_close(
        focal_loss(LOGITS, LABELS, gamma=0.0, weight=weight, label_smoothing=0.1),
        F.cross_entropy(LOGITS, LABELS, weight=weight, label_smoothing=0.1),
    )


def test_focal_by_hand():
    p = torch.softmax(LOGITS, -1)[torch.arange(3), LABELS]
    expected = ((1 - p) ** 2 * -torch.log(p)).mean()
    torch.testing.assert_close(focal_loss(LOGITS, LABELS, gamma=2.0), expected)
    # Focusing: a confident right answer contributes far less than under cross-entropy.
    assert focal_loss(LOGITS[:1], LABELS[:1]) < 0.1 * F.cross_entropy(LOGITS[:1], LABELS[:1])


def test_distillation_by_hand():
    teacher = torch.tensor([[1.0, 0.0, -1.0]])
    student = torch.tensor([[0.0, 0.5, 0.0]])
    t = 2.0
    p, q = torch.softmax(teacher / t, -1), torch.softmax(student / t, -1)
    expected = (p * (p.log() - q.log())).sum() * t**2
    torch.testing.assert_close(distillation_loss(student, teacher, t), expected)
    assert distillation_loss(teacher, teacher, t).abs() < 1e-6


def test_distillation_gradient_scale_is_temperature_free():
    # The T^2 factor keeps gradients comparable across temperatures (Hinton et al. 2015).
    teacher = torch.randn(64, 7, generator=torch.Generator().manual_seed(0))
    norms = []
    for t in (2.0, 16.0):
        student = torch.zeros(64, 7, requires_grad=True)
        distillation_loss(student, teacher, t).backward()
        norms.append(student.grad.norm().item())
    assert norms[0] == pytest.approx(norms[1], rel=0.1)
    # Without the factor the T=16 gradient would be 64x smaller.


def test_ensemble_teacher_logits_by_hand():
    a = torch.tensor([[2.0, 0.0, -1.0]])
    b = torch.tensor([[-1.0, 1.0, 3.0]])
    t = 2.0
    mixed = ensemble_teacher_logits([a, b], t)
    expected = (torch.softmax(a / t, -1) + torch.softmax(b / t, -1)) / 2
    torch.testing.assert_close(torch.softmax(mixed / t, -1), expected)
    # Not the softmax of the mean logits (a geometric mean), which the test can tell apart.
    assert not torch.allclose(torch.softmax((a + b) / 2 / t, -1), expected, atol=1e-3)
    # One teacher: a per-row shift of its logits, the same distillation target.
    torch.testing.assert_close(
        distillation_loss(b, ensemble_teacher_logits([a], t), t), distillation_loss(b, a, t)
    )


def test_class_balanced_sampler():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sampler = ClassBalancedSampler(labels, seed=5, num_samples=30_000)
    draws = np.array(list(sampler))
    counts = np.bincount(labels[draws], minlength=3) / draws.size
    assert counts == pytest.approx([1 / 3] * 3, abs=0.02)
    assert len(sampler) == 30_000
    assert list(sampler) == draws.tolist()  # same epoch, same draw (every DDP rank agrees)
    sampler.set_epoch(1)
    assert list(sampler) != draws.tolist()
    assert len(ClassBalancedSampler(labels, seed=0)) == 100


def test_sampler_rejects_empty_labels():
    with pytest.raises(ValueError, match=r"non-empty 1-D sequence, got shape \(0,\)"):
        ClassBalancedSampler([], seed=0)


def test_focal_ignores_nothing_and_is_finite_for_confident_logits():
    logits = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    loss = focal_loss(logits, torch.tensor([0, 0]))
    assert math.isfinite(loss.item()) and loss.item() > 10
