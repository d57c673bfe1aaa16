"""Classification and segmentation metrics and threshold sweeps: pure NumPy / scikit-learn, no torch.

Everything returned is JSON-ready (Python ints, floats, lists, None). Divisions by zero give
0, never a warning or NaN, so the functions can run every epoch on any validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import numpy as np

from inspekt.card import NORMAL_NAMES, positive_class
from inspekt.tasks.shared import confusion_counts, inspection_rates, ratio

ECE_BINS = 15


def _check_inputs(y_true: np.ndarray, probs: np.ndarray, n_classes: int, y_pred: np.ndarray) -> None:
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}), one column per class; got {probs.shape}")
    if not len(y_true):
        raise ValueError("no samples: classification metrics need at least one image")
    if len(y_true) != len(probs) or len(y_pred) != len(probs):
        raise ValueError(f"y_true ({len(y_true)}), probs ({len(probs)}) and y_pred ({len(y_pred)}) differ in length")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.min() < 0 or values.max() >= n_classes:
            raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1}")


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width confidence bins of
    (bin share) * |accuracy in bin - mean confidence in bin|.

    Args:
        confidence: (N,) probabilities in [0, 1]; bin ``i`` holds (i/bins, (i+1)/bins], 0 joins bin 0.
        correct: (N,) booleans, whether each decision was right.
        bins: number of bins.

    Returns:
        The ECE in [0, 1].
    """
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    right = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    sure = np.bincount(index, weights=confidence, minlength=bins)
    return float(np.abs(right - sure).sum() / max(1, len(confidence)))  # sum over bins of n_b * |acc_b - conf_b|


def _ranking_scores(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> tuple[float | None, float | None]:
    """ROC-AUC and average precision: of the positive class (binary) or the macro mean one-vs-rest
    over the classes with both positives and negatives (multi-class); None when no class has both."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(classes) == 2:
        candidates = [list(classes).index(positive_class(tuple(classes)))]
    else:
        candidates = list(range(len(classes)))
    aucs, aps = [], []
    for c in candidates:
        is_c = y_true == c
        if is_c.all() or not is_c.any():
            continue
        aucs.append(roc_auc_score(is_c, probs[:, c]))
        aps.append(average_precision_score(is_c, probs[:, c]))
    if not aucs:
        return None, None
    return float(np.mean(aucs)), float(np.mean(aps))


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], *, y_pred: np.ndarray | None = None
) -> dict:
    """Accuracy, macro/weighted precision-recall-F1, ROC-AUC, PR-AUC, ECE, per-class scores and
    confusion matrices of a classifier's predictions.

    Macro averages (and balanced accuracy) follow scikit-learn: they run over the classes that
    occur in ``y_true`` or ``y_pred`` (balanced accuracy: in ``y_true``), so a class absent from
    an evaluation set does not drag them down. ``per_class`` lists every class.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities, columns in the order of ``classes``.
        classes: the class names.
        y_pred: (N,) predicted indices; defaults to ``probs.argmax(1)`` (pass it when a binary
            threshold decided the labels). ECE always measures the top-1 probability.

    Returns:
        A JSON-ready dict: n, accuracy, balanced_accuracy, macro_/weighted_ precision, recall,
        f1, roc_auc, pr_auc (None when undefined, e.g. one class only), ece, per_class
        [{class, precision, recall, f1, support}], confusion (counts, rows = true) and
        confusion_normalized (rows sum to 1; empty rows stay 0).

    Raises:
        ValueError: shapes that do not match, no samples, or indices outside the classes.
    """
    y_true, probs = np.asarray(y_true, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    _check_inputs(y_true, probs, len(classes), y_pred)
    cm = confusion_counts(y_true, y_pred, len(classes))
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    seen = (support > 0) | (predicted > 0)
    weights = support / support.sum()
    roc_auc, pr_auc = _ranking_scores(y_true, probs, classes)
    top1 = probs.argmax(1)
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / len(y_true)),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_precision": float(precision[seen].mean()),
        "macro_recall": float(recall[seen].mean()),
        "macro_f1": float(f1[seen].mean()),
        "weighted_precision": float(weights @ precision),
        "weighted_recall": float(weights @ recall),
        "weighted_f1": float(weights @ f1),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "ece": expected_calibration_error(probs[np.arange(len(top1)), top1], top1 == y_true),
        "per_class": [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        ],
        "confusion": cm.tolist(),
        "confusion_normalized": ratio(cm, support[:, None]).tolist(),
    } | _inspection(y_true, y_pred, classes)


def _inspection(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Escape and false-reject rates when exactly one class is the normal one (ok, good, ...); {} otherwise."""
    normal = [i for i, name in enumerate(classes) if name.lower() in NORMAL_NAMES]
    if len(normal) != 1:
        return {}
    return inspection_rates(y_true != normal[0], y_pred != normal[0])


def threshold_sweep(is_positive: np.ndarray, score: np.ndarray, n: int = 101) -> list[dict]:
    """Precision, recall, F1 and false-positive rate when "positive" means ``score >= threshold``,
    for ``n`` thresholds evenly spaced over [0, 1].

    Args:
        is_positive: (N,) booleans, the truth.
        score: (N,) probability of the positive class.
        n: number of thresholds (2 or more).

    Returns:
        Rows in increasing threshold order: threshold, precision, recall, f1, fpr, tpr,
        predicted_positive (count).

    Raises:
        ValueError: fewer than 2 thresholds or inputs of different lengths.
    """
    is_positive, score = np.asarray(is_positive, dtype=bool), np.asarray(score, dtype=np.float64)
    if n < 2:
        raise ValueError(f"a threshold sweep needs n >= 2 thresholds, not {n}")
    if is_positive.shape != score.shape:
        raise ValueError(f"is_positive {is_positive.shape} and score {score.shape} differ in shape")
    # Rounded, so the decision uses exactly the value reported (and stored in a card): 0.6, not 0.6000000000000001.
    thresholds = np.round(np.linspace(0.0, 1.0, n), 6)
    pos, neg = np.sort(score[is_positive]), np.sort(score[~is_positive])
    # Counts of scores >= t, for every t at once, from the sorted scores.
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    precision, recall, fpr = ratio(tp, tp + fp), ratio(tp, len(pos)), ratio(fp, len(neg))
    f1 = ratio(2 * precision * recall, precision + recall)
    return [
        {
            "threshold": float(t),
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "fpr": float(x),
            "tpr": float(r),
            "predicted_positive": int(a + b),
        }
        for t, p, r, f, x, a, b in zip(thresholds, precision, recall, f1, fpr, tp, fp)
    ]


def best_f1_threshold(sweep: list[dict]) -> dict:
    """The sweep row with the highest F1.

    Several thresholds often tie (no score lies between them, so they decide alike). Then the
    middle of the longest run of tied, adjacent thresholds is chosen: it keeps the widest margin
    to the scores on both sides, so it is the least fragile choice on new images (the lowest or
    highest tied threshold sits right next to a training score).

    Args:
        sweep: rows from ``threshold_sweep`` (increasing thresholds).

    Returns:
        The chosen row.

    Raises:
        ValueError: an empty sweep.
    """
    if not sweep:
        raise ValueError("the threshold sweep is empty")
    f1 = np.array([row["f1"] for row in sweep])
    best = np.isclose(f1, f1.max(), rtol=0, atol=1e-12)
    runs = [list(group) for tied, group in groupby(range(len(best)), key=lambda i: best[i]) if tied]
    longest = max(runs, key=len)  # the first of equally long runs: the lowest
    return sweep[longest[(len(longest) - 1) // 2]]
