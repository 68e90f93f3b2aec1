"""Seeded stratified carve-out, train-split resampling (index selection) and class weights.

Pure numpy over label arrays: imports nothing from fer_hf and never touches images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLE_STRATEGIES: tuple[str, ...] = ("none", "oversample", "undersample", "sqrt")
CLASS_WEIGHT_METHODS: tuple[str, ...] = ("inverse", "effective")


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(
            f"`labels` must be a 1-D sequence of ints, got shape {array.shape} of {array.dtype}."
        )
    if array.size and array.min() < 0:
        raise ValueError(f"`labels` must be >= 0, got {int(array.min())}.")
    return array.astype(np.int64, copy=False)


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    """Number of records per class index `0..num_classes-1`."""
    array = _as_labels(labels)
    if array.size and array.max() >= num_classes:
        raise ValueError(f"label {int(array.max())} is out of range for {num_classes} classes.")
    return np.bincount(array, minlength=num_classes).tolist()


def stratified_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Carve `fraction` of every class out of `labels`; returns sorted (kept, carved) indices.

    Each class contributes `round(n_c * fraction)` records, and at least one when it has two or
    more, so every class that can be present in both parts is. The same seed gives the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}.")
    array = _as_labels(labels)
    rng = np.random.default_rng(seed)
    carved = []
    for label in np.unique(array):
        members = np.flatnonzero(array == label)
        take = int(round(len(members) * fraction))
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        carved.append(rng.permutation(members)[:take])
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.zeros(0, dtype=np.int64)
    kept_idx = np.setdiff1d(np.arange(len(array)), carved_idx, assume_unique=True)
    return kept_idx, carved_idx


def target_counts(
    counts: Sequence[int], strategy: str, target_count: int | None = None
) -> list[int]:
    """Per-class record counts after resampling with `strategy` (empty classes stay empty).

    - `none`: unchanged.
    - `oversample`: every class up to the largest (or `target_count`); larger classes are kept.
    - `undersample`: every class down to the smallest non-empty one (or `target_count`); smaller
      classes are kept.
    - `sqrt`: softened oversampling, `round(sqrt(n_c * n_max))`: the largest class is unchanged
      and class ratios become the square root of the original ones.
    """
    if strategy not in RESAMPLE_STRATEGIES:
        raise ValueError(
            f"Unknown resampling strategy {strategy!r}; expected one of: "
            f"{', '.join(RESAMPLE_STRATEGIES)}."
        )
    if target_count is not None:
        if strategy not in ("oversample", "undersample"):
            raise ValueError(
                f"`target_count` only applies to 'oversample' and 'undersample', got "
                f"target_count={target_count} with {strategy!r}; drop it or change the strategy."
            )
        if isinstance(target_count, bool) or not isinstance(target_count, int | np.integer):
            raise TypeError(f"`target_count` must be an int, got {type(target_count).__name__}.")
        if target_count < 1:
            raise ValueError(f"`target_count` must be >= 1, got {target_count}.")
    counts = [int(c) for c in counts]
    present = [c for c in counts if c > 0]
    if not present or strategy == "none":
        return counts
    if strategy == "oversample":
        goal = target_count if target_count is not None else max(present)
        return [max(c, goal) if c else 0 for c in counts]
    if strategy == "undersample":
        goal = target_count if target_count is not None else min(present)
        return [min(c, goal) for c in counts]
    largest = max(present)
    return [int(round(np.sqrt(c * largest))) if c else 0 for c in counts]


def resample_indices(
    labels: Sequence[int] | np.ndarray,
    strategy: str = "none",
    seed: int = 42,
    target_count: int | None = None,
) -> np.ndarray:
    """Row indices that resample `labels` with `strategy` (see `target_counts`), for `select`.

    Oversampling repeats every record of a class as often as fits, then draws the remainder without
    replacement, so copies are spread evenly; undersampling draws without replacement. The result
    is shuffled. `none` returns `arange(n)` untouched. Deterministic for a given seed.
    """
    array = _as_labels(labels)
    num_classes = int(array.max()) + 1 if array.size else 0
    counts = class_counts(array, num_classes)
    goals = target_counts(counts, strategy, target_count)
    if strategy == "none":
        return np.arange(len(array), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for label, (count, goal) in enumerate(zip(counts, goals, strict=True)):
        if count == 0:
            continue
        members = np.flatnonzero(array == label)
        repeats, remainder = divmod(goal, count)
        chosen.append(np.tile(members, repeats))
        chosen.append(rng.choice(members, size=remainder, replace=False))
    indices = np.concatenate(chosen).astype(np.int64)
    return rng.permutation(indices)


def class_weights(
    counts: Sequence[int] | Mapping[str, int] | np.ndarray,
    method: str = "inverse",
    beta: float = 0.999,
) -> np.ndarray:
    """Per-class loss weights, normalised so the weights of non-empty classes sum to their number.

    - `inverse`: `1 / n_c` (inverse frequency).
    - `effective`: `(1 - beta) / (1 - beta ** n_c)`, the inverse "effective number of samples" of
      Cui et al., "Class-Balanced Loss Based on Effective Number of Samples" (CVPR 2019).
    Empty classes get weight 0. `counts` is in class-index order (a mapping keeps its order).
    """
    if method not in CLASS_WEIGHT_METHODS:
        raise ValueError(
            f"Unknown class-weight method {method!r}; expected one of: "
            f"{', '.join(CLASS_WEIGHT_METHODS)}."
        )
    if isinstance(counts, Mapping):
        counts = list(counts.values())
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or (values < 0).any():
        raise ValueError(f"`counts` must be a non-empty 1-D list of counts >= 0, got {counts!r}.")
    if not values.any():
        raise ValueError("`counts` are all zero; class weights need at least one record.")
    if method == "effective" and not 0.0 <= beta < 1.0:
        raise ValueError(f"`beta` must be in [0, 1), got {beta!r}.")
    present = values > 0
    weights = np.zeros_like(values)
    if method == "inverse":
        weights[present] = 1.0 / values[present]
    else:
        weights[present] = (1.0 - beta) / (1.0 - np.power(beta, values[present]))
    return weights * present.sum() / weights.sum()
