"""Evaluating a classifier: accuracy, F1, ROC/PR-AUC, calibration and confusion against labels; a
binary model's threshold sweep and the choice of its threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from inspekt.card import ModelCard, positive_class
from inspekt.data.dataset import Dataset
from inspekt.errors import ConfigError, DatasetError
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.base import Progress, nothing_scored, predict_split
from inspekt.tasks.classify.metrics import best_f1_threshold, classification_metrics, threshold_sweep
from inspekt.tasks.classify.predict import decide
from inspekt.tasks.shared import BEST_F1, parse_threshold_choice


@dataclass
class EvalResult:
    """A model's predictions on a dataset split, and the metrics computed from them.

    Attributes:
        bundle: path of the evaluated bundle.
        data: path of the dataset.
        split: the evaluated split (train, val, test or all).
        classes: the model's classes (column order of ``probs``).
        paths: the images evaluated (skipped files excluded).
        y_true: (N,) true class indices.
        probs: (N, C) predicted probabilities.
        y_pred: (N,) decided class indices (argmax, or the binary threshold).
        metrics: ``inspekt.tasks.classify.metrics.classification_metrics`` of the above.
        positive: the positive class of a binary model (None for multi-class).
        threshold: the positive-class probability that decided ``y_pred`` (None: argmax).
        sweep: the threshold sweep over the positive probability (binary only).
        skipped: files that could not be read.
    """

    bundle: str
    data: str
    split: str
    classes: tuple[str, ...]
    paths: list[str]
    y_true: np.ndarray
    probs: np.ndarray
    y_pred: np.ndarray
    metrics: dict
    positive: str | None = None
    threshold: float | None = None
    sweep: list[dict] | None = None
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def rows(self) -> list[dict]:
        """Per-image rows: path, true, predicted, correct, then ``score_<class>`` per class."""
        return [
            {
                "path": path,
                "true": self.classes[t],
                "predicted": self.classes[p],
                "correct": bool(t == p),
                **{f"score_{c}": float(s) for c, s in zip(self.classes, scores)},
            }
            for path, t, p, scores in zip(self.paths, self.y_true, self.y_pred, self.probs)
        ]

    def with_threshold(self, threshold: str | float) -> EvalResult:
        """The same predictions decided at another positive-class threshold (binary models).

        Args:
            threshold: a probability in [0, 1], or "best-f1" for the sweep's best-F1 threshold.

        Raises:
            ConfigError: a multi-class model, or an invalid threshold.
        """
        threshold = choose_threshold(self, threshold)
        y_pred = decide(self.probs, self.classes, {self.positive: threshold})
        # the scores again at the new threshold, beside what does not depend on it (the evaluator's n_seen)
        metrics = self.metrics | classification_metrics(self.y_true, self.probs, self.classes, y_pred=y_pred)
        return replace(self, y_pred=y_pred, metrics=metrics, threshold=threshold)

    def misclassified(self, limit: int | None = None) -> list[int]:
        """Indices of misclassified images, worst first (least probability on the true class).

        Args:
            limit: the most indices returned (None: all).

        Returns:
            Indices into ``paths`` / ``y_true`` / ``probs``.
        """
        wrong = np.flatnonzero(self.y_true != self.y_pred)
        order = wrong[np.argsort(self.probs[wrong, self.y_true[wrong]], kind="stable")]
        return order[:limit].tolist()

    def to_dict(self) -> dict:
        """JSON-ready summary: metrics, threshold, sweep (binary) and skipped files (no per-image rows)."""
        return {
            "bundle": self.bundle,
            "data": self.data,
            "split": self.split,
            "classes": list(self.classes),
            "n_images": len(self.paths),
            "n_skipped": len(self.skipped),
            "positive_class": self.positive,
            "threshold": self.threshold,
            "metrics": self.metrics,
            "sweep": self.sweep,
            "best_f1": best_f1_threshold(self.sweep) if self.sweep else None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def _true_indices(dataset: Dataset, classes: tuple[str, ...]) -> dict[str, int]:
    """Path -> class index; every sample needs a label the model knows."""
    unlabelled = [s for s in dataset.samples if s.label is None]
    if unlabelled:
        raise DatasetError(
            f"{dataset.root}: {len(unlabelled)} image(s) have no label (e.g. {unlabelled[0].path}); "
            "evaluation needs class folders or a CSV label column"
        )
    check_labels(
        dataset, classes, "evaluate on data labelled with the model's classes (rename the folders or CSV labels)"
    )
    return {str(s.path): classes.index(s.label) for s in dataset.samples}


def check_labels(dataset: Dataset, classes: Sequence[str], advice: str) -> None:
    """Refuse a dataset whose labels are not all classes of the model (unlabelled images pass).

    Raises:
        DatasetError: naming the unknown labels, the model's classes and ``advice``.
    """
    unknown = sorted({s.label for s in dataset.samples if s.label is not None} - set(classes))
    if unknown:
        raise DatasetError(
            f"{dataset.root}: label(s) {', '.join(unknown)} are not classes of the model "
            f"({', '.join(classes)}); {advice}"
        )


def evaluate_classify(predictor, dataset: Dataset, split: str, progress: Progress = None) -> EvalResult:
    """Predict every image of ``dataset`` (one split, already selected) and score it against its labels.

    Binary models are decided at the card's threshold when it has one (as the Predictor does), else by
    the most probable class; their threshold sweep is included.

    Raises:
        DatasetError: unlabelled images, labels the model does not know, or no readable image at all.
    """
    card = predictor.card
    truth = _true_indices(dataset, card.classes)
    report = BatchReport()
    predictions = [p for _, p in predict_split(predictor, dataset, report, progress)]
    if not predictions:
        raise nothing_scored(dataset, len(truth), split, report)
    positive, threshold = _binary_decision(card)
    probs = np.array([[p.scores[c] for c in card.classes] for p in predictions])
    y_true = np.array([truth[p.source] for p in predictions])
    y_pred = decide(probs, card.classes, {positive: threshold} if positive and threshold is not None else {})
    sweep = None
    if positive is not None:
        index = card.classes.index(positive)
        sweep = threshold_sweep(y_true == index, probs[:, index])
    return EvalResult(
        bundle=str(predictor.bundle.path),
        data=str(dataset.root),
        split=split,
        classes=card.classes,
        paths=[p.source for p in predictions],
        y_true=y_true,
        probs=probs,
        y_pred=y_pred,
        metrics=classification_metrics(y_true, probs, card.classes, y_pred=y_pred),
        positive=positive,
        threshold=threshold,
        sweep=sweep,
        skipped=list(report.skipped),
    )


def _binary_decision(card: ModelCard) -> tuple[str | None, float | None]:
    """(positive class, card threshold or None) of a binary model; (None, None) otherwise."""
    if len(card.classes) != 2:
        return None, None
    positive = next(iter(card.thresholds), None) or positive_class(card.classes)
    return positive, card.thresholds.get(positive)


def choose_threshold(result: EvalResult, choice: str | float) -> float:
    """The threshold ``choice`` names: the best-F1 row of the sweep, or the given probability.

    Args:
        result: an evaluation of a binary model (it holds the sweep).
        choice: "best-f1" or a probability in [0, 1].

    Returns:
        The threshold.

    Raises:
        ConfigError: a multi-class result or an invalid choice.
    """
    choice = parse_threshold_choice(choice)
    if result.sweep is None:
        raise _not_binary(result.bundle, result.classes)
    return best_f1_threshold(result.sweep)["threshold"] if choice == BEST_F1 else float(choice)


def binary_positive_class(card: ModelCard, where: str | Path) -> str:
    """The positive class of a binary classifier (the one its threshold is about).

    Args:
        card: the model's card.
        where: the bundle's path (for the message).

    Returns:
        The class name: the card's threshold key, else ``card.positive_class``.

    Raises:
        ConfigError: not a binary classifier (thresholds would not apply).
    """
    if len(card.classes) != 2:
        raise _not_binary(where, card.classes)
    return _binary_decision(card)[0]


def _not_binary(where: str | Path, classes: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"{where}: a decision threshold applies to binary classifiers only; this model has "
        f"{len(classes)} classes ({', '.join(classes)}) and predicts the most probable one"
    )
