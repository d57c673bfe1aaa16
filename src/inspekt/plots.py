"""PNG plots of training histories, confusion matrices, threshold sweeps and run comparisons,
and the HTML gallery of an evaluation's errors.

Figures are drawn on matplotlib's object-oriented ``Figure`` with the Agg canvas: no pyplot,
no global backend switch, never a window, safe in servers and threads. matplotlib is imported
inside the functions so that ``import inspekt`` stays light.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from inspekt.io import BatchReport, iter_images, save_image

if TYPE_CHECKING:
    from inspekt.evaluation import EvalResult

# Panels of a training history: (title, y label, keys drawn in it).
HISTORY_PANELS = (
    ("loss", "loss", ("train_loss", "val_loss")),
    ("accuracy", "val accuracy", ("val_accuracy",)),
    ("macro-F1", "val macro-F1", ("val_macro_f1",)),
)
DPI = 110
GALLERY_LIMIT = 48
GALLERY_SIDE = 320  # gallery overlays larger than this (pixels per side) are shrunk


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


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
    figure = _figure(4.2 * len(panels), 3.4)
    for ax, (title, label, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, epochs, values in series:
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        _epoch_axes(ax, title, label)
        if len(series) > 1:
            ax.legend()
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    *,
    normalized: bool = False,
) -> Path:
    """An annotated confusion-matrix heat map (rows = true class, columns = predicted).

    Args:
        matrix: (C, C) counts, or row-normalised fractions when ``normalized``.
        classes: the C class names.
        path: the PNG to write.
        normalized: format cells as fractions (0.00-1.00) and fix the colour scale to [0, 1].

    Returns:
        The written path.

    Raises:
        ValueError: the matrix is not C x C.
    """
    values = np.asarray(matrix, dtype=np.float64)
    n = len(classes)
    if values.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {values.shape} does not fit {n} classes")
    side = max(4.0, 0.55 * n + 2.0)
    figure = _figure(side + 1.0, side)
    ax = figure.subplots()
    top = 1.0 if normalized else max(1.0, values.max())
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    font = max(6, 12 - n // 3)
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalized else f"{int(round(value))}"
        ax.text(j, i, text, ha="center", va="center", fontsize=font, color="white" if value > top / 2 else "black")
    ax.set_xticks(
        range(n), labels=list(classes), rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=font
    )
    ax.set_yticks(range(n), labels=list(classes), fontsize=font)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix" + (" (row-normalised)" if normalized else ""))
    figure.tight_layout()
    return _save(figure, path)


def plot_threshold_sweep(sweep: Sequence[dict], path: str | Path, *, chosen: float | None = None) -> Path:
    """Precision, recall and F1 of the positive class against the decision threshold.

    Args:
        sweep: rows from ``inspekt.metrics.threshold_sweep``.
        path: the PNG to write.
        chosen: a threshold to mark with a vertical line.

    Returns:
        The written path.

    Raises:
        ValueError: an empty sweep.
    """
    if not sweep:
        raise ValueError("the threshold sweep is empty")
    figure = _figure(5.5, 3.8)
    ax = figure.subplots()
    thresholds = [row["threshold"] for row in sweep]
    for key in ("precision", "recall", "f1"):
        ax.plot(thresholds, [row[key] for row in sweep], label=key)
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle="--", label=f"threshold {chosen:.2f}")
    ax.set(
        xlabel="threshold on the positive-class probability",
        ylabel="score",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="threshold sweep",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    figure.tight_layout()
    return _save(figure, path)


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
    figure = _figure(5.5, 3.6)
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
    return _save(figure, path)


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
    figure = _figure(10.0, 3.8)
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
    return _save(figure, path)


# --- evaluation results ------------------------------------------------------------------


def plot_evaluation(result: EvalResult, folder: str | Path, *, gallery_limit: int = GALLERY_LIMIT) -> list[Path]:
    """Confusion matrices, the threshold sweep (binary) and the Grad-CAM gallery of errors.

    Args:
        result: an evaluation (``inspekt.evaluation.evaluate``).
        folder: where to write (created if missing).
        gallery_limit: the most misclassified images the gallery shows.

    Returns:
        The written files: confusion.png, confusion_normalized.png, threshold_sweep.png
        (binary), gallery.html (its overlays lie in ``folder/gallery/``).
    """
    folder = Path(folder)
    metrics, classes = result.metrics, result.classes
    written = [
        plot_confusion(metrics["confusion"], classes, folder / "confusion.png"),
        plot_confusion(metrics["confusion_normalized"], classes, folder / "confusion_normalized.png", normalized=True),
    ]
    if result.sweep:
        written.append(plot_threshold_sweep(result.sweep, folder / "threshold_sweep.png", chosen=result.threshold))
    written.append(write_gallery(result, folder, limit=gallery_limit))
    return written


def _error_kind(result: EvalResult, index: int) -> str:
    if result.positive is None:
        return "misclassified"
    predicted_positive = result.classes[result.y_pred[index]] == result.positive
    return "false positive" if predicted_positive else "false negative"


def _thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2

    scale = GALLERY_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_gallery(result: EvalResult, folder: str | Path, *, limit: int = GALLERY_LIMIT) -> Path:
    """``gallery.html``: the worst misclassified images (at most ``limit``) with Grad-CAM overlays of
    the predicted class, their true and predicted class and confidence.

    Args:
        result: an evaluation (``inspekt.evaluation.evaluate``); its bundle gives the Grad-CAM.
        folder: where gallery.html goes; the overlays go to ``folder/gallery/``.
        limit: the most images shown, worst (least probability on the true class) first.

    Returns:
        The path of gallery.html.
    """
    from inspekt.explain import Explainer

    folder = Path(folder)
    chosen = result.misclassified(limit)
    explainer = Explainer.load(result.bundle) if chosen else None
    cards = []
    images = iter_images([result.paths[i] for i in chosen], mode="keep", report=BatchReport())
    by_path = dict(images)  # files that vanished since the evaluation are left out
    for rank, index in enumerate(chosen):
        path, predicted = result.paths[index], result.classes[result.y_pred[index]]
        if path not in by_path:
            continue
        explanation = explainer.explain(by_path[path], target=predicted, source=path)
        relative = f"gallery/{rank:03d}_{Path(path).stem}.png"
        save_image(folder / relative, _thumbnail(explanation.overlay))
        cards.append(
            _gallery_card(
                relative,
                path,
                _error_kind(result, index),
                result.classes[result.y_true[index]],
                predicted,
                float(result.probs[index, result.y_pred[index]]),
            )
        )
    n_errors = int((result.y_true != result.y_pred).sum())
    page = _GALLERY_PAGE.format(
        title=html.escape(f"errors of {result.bundle} on {result.data} ({result.split})"),
        summary=f"{n_errors} of {len(result.paths)} images misclassified; the {len(cards)} worst shown "
        "(Grad-CAM of the predicted class)",
        cards="\n".join(cards) or "<p>No misclassified images.</p>",
    )
    out = folder / "gallery.html"
    out.write_text(page, encoding="utf-8")
    return out


def _gallery_card(image: str, path: str, kind: str, true: str, predicted: str, confidence: float) -> str:
    e = html.escape
    return (
        f'<figure><img src="{e(quote(image))}" alt="{e(path)}"><figcaption><b>{e(kind)}</b><br>'
        f"true: {e(true)}<br>predicted: {e(predicted)} ({confidence:.1%})<br>"
        f'<span class="path">{e(path)}</span></figcaption></figure>'
    )


_GALLERY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; margin: 1.5em; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 1em; }}
figure {{ margin: 0; border: 1px solid #ccc; padding: .5em; }}
img {{ width: 100%; image-rendering: pixelated; }}
.path {{ color: #666; font-size: .8em; word-break: break-all; }}
</style></head><body><h1>{title}</h1><p>{summary}</p><main>
{cards}
</main></body></html>
"""


def plot_prediction(prediction, image: np.ndarray, *, ax=None):
    """Draw an image with its predicted label, confidence and runner-up classes (notebooks).

    Args:
        prediction: an ``inspekt.predictor.Prediction``.
        image: the decoded image (HxW or HxWx3 uint8).
        ax: a matplotlib Axes; by default a new pyplot figure, which notebooks display inline.

    Returns:
        The Axes drawn into.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    score = "" if prediction.score is None else f" {prediction.score:.3f}"
    ax.set_title(f"{Path(prediction.source).name}: {prediction.label}{score}")
    runners = "\n".join(f"{name} {p:.3f}" for name, p in prediction.top(4)[1:])
    if runners:
        ax.text(
            0.01,
            0.01,
            runners,
            transform=ax.transAxes,
            color="white",
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 2},
        )
    ax.set_axis_off()
    return ax
