"""PNG plots of a prepared dataset: class counts before/after resampling, valence/arousal per class.

matplotlib with the Agg backend only; imports nothing from fer_hf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_class_distribution(report: dict, path: str | Path) -> Path:
    """One panel per split, bars per class; train shows counts before and after resampling."""
    plt = _pyplot()
    names = report["class_names"]
    splits = list(report["class_counts_after"])
    fig, axes = plt.subplots(1, len(splits), figsize=(4.5 * len(splits), 4.2), squeeze=False)
    x = np.arange(len(names))
    for ax, split in zip(axes[0], splits, strict=True):
        before = [report["class_counts_before"][split][n] for n in names]
        after = [report["class_counts_after"][split][n] for n in names]
        if before != after:
            ax.bar(x - 0.2, before, width=0.4, label="before", color="#9bb7d4")
            ax.bar(
                x + 0.2, after, width=0.4, label=f"after ({report['resample']})", color="#1f4e79"
            )
            ax.set_ylim(0, 1.25 * max(max(before), max(after)))
            ax.legend(fontsize=8, ncol=2, loc="upper center")
        else:
            ax.bar(x, before, width=0.6, color="#1f4e79")
        ax.set_title(f"{split} ({sum(after):,} records)")
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylabel("records")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Class distribution: {report['source']} ({report['layout']})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_valence_arousal(
    labels: np.ndarray,
    valence: np.ndarray,
    arousal: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
) -> Path | None:
    """Joint valence/arousal histogram per class; returns None (writes nothing) without values."""
    known = np.isfinite(valence) & np.isfinite(arousal)
    if not known.any():
        return None
    plt = _pyplot()
    columns = 4
    rows = math.ceil(len(class_names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    bins = np.linspace(-1.0, 1.0, 41)
    for index, ax in enumerate(axes.flat):
        if index >= len(class_names):
            ax.axis("off")
            continue
        chosen = known & (labels == index)
        ax.hist2d(valence[chosen], arousal[chosen], bins=[bins, bins], cmap="viridis", cmin=1)
        ax.set_title(f"{class_names[index]} (n={int(chosen.sum()):,})", fontsize=10)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("valence", fontsize=8)
        ax.set_ylabel("arousal", fontsize=8)
    fig.suptitle("Valence / arousal per class (all splits, before resampling)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
