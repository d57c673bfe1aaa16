"""PNG plots of training histories and of run comparisons (each task's evaluation plots live in its
folder, e.g. ``inspekt.tasks.classify.plots``).

Figures are drawn on matplotlib's object-oriented ``Figure`` with the Agg canvas: no pyplot,
no global backend switch, never a window, safe in servers and threads. matplotlib is imported
inside the functions so that ``import inspekt`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from inspekt.figures import new_figure, save_figure

# Panels of a training history: (title, y label, keys drawn in it).
HISTORY_PANELS = (
    ("loss", "loss", ("train_loss", "val_loss")),
    ("accuracy", "val accuracy", ("val_accuracy",)),
    ("macro-F1", "val macro-F1", ("val_macro_f1",)),
)


def _epoch_axes(ax, title: str, ylabel: str) -> None:
    """Title, labels, whole-number epoch ticks and a light grid."""
    from matplotlib.ticker import MaxNLocator

    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _number(value: object) -> float | None:
    """A finite float from a history cell (CSV rows hold strings; missing cells are '' or None)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _series(history: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows where both ``epoch`` and ``key`` hold numbers."""
    points = [(_number(row.get("epoch", i + 1)), _number(row.get(key))) for i, row in enumerate(history)]
    kept = [(x, y) for x, y in points if x is not None and y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def plot_history(history: Sequence[dict], path: str | Path) -> Path:
    """Loss, validation accuracy and validation macro-F1 against the epoch, one panel each.

    Args:
        history: the training loop's ``results.csv`` rows (epoch, train_loss, val_loss,
            val_accuracy, val_macro_f1, ...); missing keys or cells are left out.
        path: the PNG to write (parent folders are created).

    Returns:
        The written path.

    Raises:
        ValueError: no row holds any of the plotted values.
    """
    panels = []
    for title, label, keys in HISTORY_PANELS:
        series = [(key, *_series(history, key)) for key in keys]
        series = [s for s in series if s[1]]  # keys with no values at all are left out
        if series:
            panels.append((title, label, series))
    if not panels:
        raise ValueError("the history holds no train_loss, val_loss, val_accuracy or val_macro_f1 values to plot")
    figure = new_figure(4.2 * len(panels), 3.4)
    for ax, (title, label, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, epochs, values in series:
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        _epoch_axes(ax, title, label)
        if len(series) > 1:
            ax.legend()
    figure.tight_layout()
    return save_figure(figure, path)


def plot_runs(histories: dict[str, Sequence[dict]], path: str | Path) -> Path:
    """Overlaid training curves of several runs: validation macro-F1, and the losses
    (train solid, validation dashed), one colour per run.

    Args:
        histories: run name -> its ``results.csv`` rows.
        path: the PNG to write.

    Returns:
        The written path.

    Raises:
        ValueError: no runs.
    """
    if not histories:
        raise ValueError("no runs to plot")
    figure = new_figure(10.0, 3.8)
    f1_ax, loss_ax = figure.subplots(1, 2)
    for index, (name, history) in enumerate(histories.items()):
        lines = (
            (f1_ax, "val_macro_f1", "-", name),
            (loss_ax, "train_loss", "-", f"{name} train"),
            (loss_ax, "val_loss", "--", f"{name} val"),
        )
        for ax, key, style, label in lines:
            epochs, values = _series(history, key)
            if epochs:
                ax.plot(epochs, values, color=f"C{index % 10}", linestyle=style, marker=".", label=label)
    _epoch_axes(f1_ax, "validation macro-F1", "macro-F1")
    _epoch_axes(loss_ax, "loss", "loss")
    for ax in (f1_ax, loss_ax):
        if ax.lines:
            ax.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


# --- evaluation results ------------------------------------------------------------------
