"""Classification reports: the confusion matrix, the threshold sweep and the HTML gallery of an
evaluation's errors (with Grad-CAM overlays)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from inspekt.draw import banner
from inspekt.figures import new_figure, save_figure
from inspekt.io.files import iter_images
from inspekt.io.write import save_image
from inspekt.results import BatchReport
from inspekt.tasks.classify.evaluate import EvalResult

GALLERY_LIMIT = 48


GALLERY_SIDE = 320  # gallery overlays larger than this (pixels per side) are shrunk


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
    figure = new_figure(side + 1.0, side)
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
    return save_figure(figure, path)


def plot_threshold_sweep(sweep: Sequence[dict], path: str | Path, *, chosen: float | None = None) -> Path:
    """Precision, recall and F1 of the positive class against the decision threshold.

    Args:
        sweep: rows from ``inspekt.tasks.classify.metrics.threshold_sweep``.
        path: the PNG to write.
        chosen: a threshold to mark with a vertical line.

    Returns:
        The written path.

    Raises:
        ValueError: an empty sweep.
    """
    if not sweep:
        raise ValueError("the threshold sweep is empty")
    figure = new_figure(5.5, 3.8)
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
    return save_figure(figure, path)


def plot_evaluation(result: EvalResult, folder: str | Path, *, gallery_limit: int = GALLERY_LIMIT) -> list[Path]:
    """Confusion matrices, the threshold sweep (binary) and the Grad-CAM gallery of errors.

    Args:
        result: an evaluation (``inspekt.engine.evaluator.evaluate``).
        folder: where to write (created if missing).
        gallery_limit: the most misclassified images the gallery shows.

    Returns:
        The written files: confusion.png, confusion_normalized.png, roc_pr.png, threshold_sweep.png
        (binary), gallery.html (its overlays lie in ``folder/gallery/``).
    """
    folder = Path(folder)
    metrics, classes = result.metrics, result.classes
    written = [
        plot_confusion(metrics["confusion"], classes, folder / "confusion.png"),
        plot_confusion(metrics["confusion_normalized"], classes, folder / "confusion_normalized.png", normalized=True),
    ]
    written.append(plot_curves(result, folder / "roc_pr.png"))
    if result.sweep:
        written.append(plot_threshold_sweep(result.sweep, folder / "threshold_sweep.png", chosen=result.threshold))
    written.append(write_gallery(result, folder, limit=gallery_limit))
    return written


def plot_curves(result: EvalResult, path: str | Path) -> Path:
    """ROC and precision-recall curves, one-vs-rest per class (a binary model: its positive class only)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure = new_figure(10.0, 4.0)
    roc, pr = figure.subplots(1, 2)
    shown = [result.positive] if result.positive else list(result.classes)
    for name in shown:
        k = result.classes.index(name)
        truth = np.asarray(result.y_true) == k
        if not 0 < truth.sum() < len(truth):  # one kind of image only: no curve
            continue
        fpr, tpr, _ = roc_curve(truth, result.probs[:, k])
        precision, recall, _ = precision_recall_curve(truth, result.probs[:, k])
        roc.plot(fpr, tpr, label=name)
        pr.plot(recall, precision, label=name)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr.set(title="precision-recall", xlabel="recall", ylabel="precision")
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(figure, path)


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
        result: an evaluation (``inspekt.engine.evaluator.evaluate``); its bundle gives the Grad-CAM.
        folder: where gallery.html goes; the overlays go to ``folder/gallery/``.
        limit: the most images shown, worst (least probability on the true class) first.

    Returns:
        The path of gallery.html.
    """
    from inspekt.tasks.classify.explain import Explainer

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
        true, confidence = result.classes[result.y_true[index]], float(result.probs[index, result.y_pred[index]])
        # the image says what went wrong on itself too: it is shown without this page (the workbench)
        said = f"true {true}, predicted {predicted} {confidence:.0%}"
        save_image(folder / relative, banner(_thumbnail(explanation.overlay), said))
        cards.append(_gallery_card(relative, path, _error_kind(result, index), true, predicted, confidence))
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
