"""Imbalance- and distillation-aware losses and the class-balanced sampler used by `FerTrainer`.

Pure torch; imports nothing from fer_hf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), multi-class:
    mean over the batch of `(1 - p_t) ** gamma * CE_t`, with optional per-class `weight`
    (as `alpha_t`) and label smoothing. `gamma=0` is (weighted) cross-entropy.

    With `weight`, the mean is normalised by the sum of the batch's weights, as `F.cross_entropy`.
    """
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=-1)  # (B, K)
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes).to(log_probs.dtype)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / num_classes
    per_class = -target * log_probs  # (B, K)
    if weight is not None:
        per_class = per_class * weight.to(per_class)
    p_t = log_probs.gather(1, labels[:, None]).squeeze(1).exp()  # (B,)
    loss = (1 - p_t).pow(gamma) * per_class.sum(dim=-1)
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.to(loss)[labels].sum()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Hinton et al. (2015): `KL(softmax(t / T) || softmax(s / T)) * T**2`, batch mean.

    The `T**2` factor keeps the gradient scale independent of the temperature.
    """
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2


def ensemble_teacher_logits(member_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Several teachers' logits as one distillation target: `T * log(mean_i softmax(z_i / T))`,
    logits whose softmax at temperature `T` is the mean of the teachers' softened probabilities
    (the average `fer-hf evaluate` scores an ensemble by, at the distillation temperature). For
    one teacher the result differs from its logits by a constant per row, which no softmax sees.
    """
    log_probs = torch.stack([F.log_softmax(z.float() / temperature, dim=-1) for z in member_logits])
    return temperature * (torch.logsumexp(log_probs, dim=0) - math.log(len(member_logits)))


def symmetric_kl(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """`(KL(p_a || p_b) + KL(p_b || p_a)) / 2`, batch mean; each side's target is detached, so
    each distribution is pulled toward the other (as in deep mutual learning, Zhang et al. 2018).
    """
    a = F.log_softmax(a_logits.float(), dim=-1)
    b = F.log_softmax(b_logits.float(), dim=-1)
    a_to_b = F.kl_div(b, a.detach(), reduction="batchmean", log_target=True)
    b_to_a = F.kl_div(a, b.detach(), reduction="batchmean", log_target=True)
    return 0.5 * (a_to_b + b_to_a)


class ClassBalancedSampler(Sampler[int]):
    """Draws `num_samples` indices with replacement so every class is equally likely.

    Record `i` has probability proportional to `1 / count[label_i]`. The draw of epoch `e` uses a
    generator seeded with `seed + e` (call `set_epoch`, as the Trainer does through Accelerate),
    so every DDP rank draws the same sequence and Accelerate shards it consistently, and a resumed
    run draws what the interrupted one would have.
    """

    def __init__(
        self, labels: Sequence[int] | np.ndarray, seed: int, num_samples: int | None = None
    ):
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(
                f"`labels` must be a non-empty 1-D sequence, got shape {labels.shape}."
            )
        counts = np.bincount(labels)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
        self.num_samples = int(num_samples if num_samples is not None else labels.size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(
            self.weights, self.num_samples, replacement=True, generator=generator
        )
        return iter(draw.tolist())


__all__ = ["ClassBalancedSampler", "distillation_loss", "focal_loss", "symmetric_kl"]
