"""Stratified carve-out, resampling strategies and class weights (fer_hf.data.splits)."""

import numpy as np
import pytest

from fer_hf.data.splits import (
    class_counts,
    class_weights,
    resample_indices,
    stratified_split,
    target_counts,
)

LABELS = np.repeat(np.arange(4), [50, 20, 5, 1])  # imbalanced, one singleton class


def test_stratified_split_is_disjoint_complete_and_stratified():
    kept, carved = stratified_split(LABELS, 0.2, seed=0)
    assert np.intersect1d(kept, carved).size == 0
    assert sorted(np.concatenate([kept, carved]).tolist()) == list(range(len(LABELS)))
    # round(n * 0.2) per class, at least one when a class has two or more, none from a singleton
    assert class_counts(LABELS[carved], 4) == [10, 4, 1, 0]


def test_stratified_split_is_deterministic_per_seed():
    first = stratified_split(LABELS, 0.2, seed=3)
    again = stratified_split(LABELS, 0.2, seed=3)
    other = stratified_split(LABELS, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize(
    "strategy, target, expected",
    [
        ("none", None, [50, 20, 5, 1]),
        ("oversample", None, [50, 50, 50, 50]),
        ("oversample", 30, [50, 30, 30, 30]),
        ("undersample", None, [1, 1, 1, 1]),
        ("undersample", 10, [10, 10, 5, 1]),
        ("sqrt", None, [50, 32, 16, 7]),  # round(sqrt(n_c * 50))
    ],
)
def test_resample_counts(strategy, target, expected):
    assert target_counts([50, 20, 5, 1], strategy, target) == expected
    indices = resample_indices(LABELS, strategy, seed=0, target_count=target)
    assert class_counts(LABELS[indices], 4) == expected
    assert indices.min() >= 0 and indices.max() < len(LABELS)


def test_oversample_spreads_copies_evenly_and_keeps_every_record():
    indices = resample_indices(LABELS, "oversample", seed=0)
    copies = np.bincount(indices, minlength=len(LABELS))
    assert copies[:50].tolist() == [1] * 50  # the largest class is untouched
    assert set(copies[50:70].tolist()) <= {2, 3}  # 50 = 2 * 20 + 10 -> every record 2 or 3 times
    assert copies[75] == 50  # the singleton repeated


def test_undersample_draws_distinct_records():
    indices = resample_indices(LABELS, "undersample", seed=0, target_count=10)
    assert len(set(indices.tolist())) == len(indices)


def test_resampling_is_deterministic_and_seed_dependent():
    a = resample_indices(LABELS, "oversample", seed=7)
    b = resample_indices(LABELS, "oversample", seed=7)
    c = resample_indices(LABELS, "oversample", seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(resample_indices(LABELS, "none"), np.arange(len(LABELS)))


def test_resampling_errors():
    with pytest.raises(ValueError, match="Unknown resampling strategy 'smote'; expected one of"):
        resample_indices(LABELS, "smote")
    with pytest.raises(ValueError, match="`target_count` only applies to"):
        resample_indices(LABELS, "sqrt", target_count=5)
    with pytest.raises(ValueError, match="`target_count` must be >= 1, got 0"):
        resample_indices(LABELS, "oversample", target_count=0)
    with pytest.raises(ValueError, match=r"`fraction` must be in \(0, 1\), got 1.5"):
        stratified_split(LABELS, 1.5, seed=0)
    with pytest.raises(TypeError, match="1-D sequence of ints"):
        resample_indices(np.array([0.5, 1.0]), "none")


def test_class_weights_inverse_frequency():
    weights = class_weights([100, 50, 0, 25], method="inverse")
    assert weights[2] == 0.0
    assert weights.sum() == pytest.approx(3.0)  # sums to the number of non-empty classes
    assert weights[1] / weights[0] == pytest.approx(2.0)
    assert weights[3] / weights[0] == pytest.approx(4.0)


def test_class_weights_effective_number():
    beta = 0.99
    counts = {"a": 100, "b": 10}
    raw = np.array([(1 - beta) / (1 - beta**100), (1 - beta) / (1 - beta**10)])
    weights = class_weights(counts, method="effective", beta=beta)
    assert np.allclose(weights, raw * 2 / raw.sum())
    # beta -> 0 gives equal weights; larger beta approaches inverse frequency
    assert np.allclose(class_weights([100, 10], "effective", beta=0.0), [1.0, 1.0])
    with pytest.raises(ValueError, match="Unknown class-weight method 'focal'"):
        class_weights([1, 2], method="focal")
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\), got 1.0"):
        class_weights([1, 2], method="effective", beta=1.0)
    with pytest.raises(ValueError, match="all zero"):
        class_weights([0, 0])
