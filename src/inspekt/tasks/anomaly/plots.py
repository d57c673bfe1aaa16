"""Anomaly reports: the histogram of normal and anomalous scores around the threshold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspekt.figures import new_figure, save_figure


def plot_score_histogram(
    normal: Sequence[float],
    anomalous: Sequence[float],
    threshold: float,
    path: str | Path,
    *,
    title: str = "anomaly scores",
    xlabel: str = "raw anomaly score",
) -> Path:
    """Overlaid histograms of normal and anomalous images' scores with the threshold marked.

    Args:
        normal: scores of normal images.
        anomalous: scores of anomalous images (may be empty).
        threshold: the decision threshold, on the same scale.
        path: the PNG to write.
        title, xlabel: labels.

    Returns:
        The written path.
    """
    figure = new_figure(5.5, 3.6)
    ax = figure.subplots()
    values = np.r_[np.asarray(normal, float), np.asarray(anomalous, float), threshold]
    bins = np.linspace(values.min(), values.max(), 41) if np.ptp(values) > 0 else 10
    ax.hist(normal, bins=bins, alpha=0.6, color="tab:green", label=f"normal ({len(normal)})")
    if len(anomalous):
        ax.hist(anomalous, bins=bins, alpha=0.6, color="tab:red", label=f"anomalous ({len(anomalous)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set(title=title, xlabel=xlabel, ylabel="images")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return save_figure(figure, path)
