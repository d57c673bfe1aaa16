"""Evaluate a classification bundle on a labelled dataset, choose a binary threshold, and
compare training runs.

``evaluate`` predicts through the one ``Predictor`` (never a second preprocessing path) and
returns a typed ``EvalResult``; ``write_json`` and ``write_csv`` serialise it, and
``inspekt.plots.plot_evaluation`` draws it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.bundle import Bundle, copy_bundle, open_bundle
from inspekt.card import ModelCard, PostProcess, positive_class
from inspekt.data import Dataset, open_dataset
from inspekt.data.dataset import SPLIT_ALIASES
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import BatchReport, SkippedFile
from inspekt.metrics import best_f1_threshold, classification_metrics, threshold_sweep
from inspekt.predictor import Predictor, decide
from inspekt.seg_evaluation import SegEvalResult, evaluate_segment

BEST_F1 = "best-f1"


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
        metrics: ``inspekt.metrics.classification_metrics`` of the above.
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
        metrics = classification_metrics(self.y_true, self.probs, self.classes, y_pred=y_pred)
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


def select_split(dataset: Dataset, split: str | None) -> tuple[Dataset, str]:
    """The samples to evaluate: ``split`` if given ("all" for every sample), else test, else val, else all.

    Args:
        dataset: the opened dataset.
        split: train, val, test (or an alias such as validation), all, or None for the default.

    Returns:
        The samples of the split and its canonical name.

    Raises:
        DatasetError: the dataset has no such split (the message lists the ones it has).
    """
    if split is None:
        split = next((s for s in ("test", "val") if s in dataset.splits), "all")
    split = SPLIT_ALIASES.get(split.lower(), split.lower())
    if split == "all":
        return dataset, split
    if split not in dataset.splits:
        available = ", ".join(dataset.splits) or "none"
        raise DatasetError(
            f"{dataset.root}: no {split!r} split (splits available: {available}); choose one of "
            f"them or --split all to evaluate all {len(dataset)} images"
        )
    return dataset.subset(split), split


def _true_indices(dataset: Dataset, classes: tuple[str, ...]) -> dict[str, int]:
    """Path -> class index; every sample needs a label the model knows."""
    unlabelled = [s for s in dataset.samples if s.label is None]
    if unlabelled:
        raise DatasetError(
            f"{dataset.root}: {len(unlabelled)} image(s) have no label (e.g. {unlabelled[0].path}); "
            "evaluation needs class folders or a CSV label column"
        )
    unknown = sorted({s.label for s in dataset.samples} - set(classes))
    if unknown:
        raise DatasetError(
            f"{dataset.root}: label(s) {', '.join(unknown)} are not classes of the model "
            f"({', '.join(classes)}); evaluate on data labelled with the model's classes "
            "(rename the folders or CSV labels)"
        )
    return {str(s.path): classes.index(s.label) for s in dataset.samples}


def evaluate(
    model: str | Path | Bundle,
    data: str | Path | Dataset,
    *,
    split: str | None = None,
    backend: str = "onnx",
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
):
    """Predict every image of a dataset split with a bundle and score the predictions.

    Classifiers: binary models are decided at the card's threshold when it has one (as the
    Predictor does), else by the most probable class; their threshold sweep is included.
    Segmentation models: scored against the masks at the original image size
    (``inspekt.seg_evaluation``), giving a ``SegEvalResult``. Anomaly models: normal class vs the
    rest, pixel metrics where masks exist (``inspekt.anomaly_evaluation``), an ``AnomalyEvalResult``.

    Args:
        model: bundle folder, ``.inspekt`` file, run folder or an opened ``Bundle``.
        data: dataset folder, CSV, or an opened ``Dataset``.
        split: the split to evaluate (default: test, else val, else all images); "all" for all.
        backend: "onnx" or "torch".
        batch_size: images per model call.
        progress: called with the number of files processed after each batch.

    Returns:
        The evaluation result; unreadable files are skipped and listed in ``skipped``.

    Raises:
        BundleError: the bundle cannot be opened.
        ConfigError: a bad backend / batch size.
        DatasetError: no such split, unlabelled images, labels the model does not know, no masks
            (segmentation), or no readable image at all.
    """

    predictor = Predictor.load(model, backend=backend, batch_size=batch_size)
    card = predictor.card
    dataset = data if isinstance(data, Dataset) else open_dataset(data)
    dataset, split = select_split(dataset, split)
    if card.task == "segment":
        return evaluate_segment(predictor, dataset, split, progress)
    if card.task == "anomaly":
        from inspekt.anomaly_evaluation import evaluate_anomaly

        return evaluate_anomaly(predictor, dataset, split, progress)
    truth = _true_indices(dataset, card.classes)
    report = BatchReport()
    predictions = _predict_files(predictor, list(truth), report, progress)
    if not predictions:
        first = report.skipped[0] if report.skipped else None
        detail = f" (first: {first.path}: {first.reason})" if first else ""
        raise DatasetError(
            f"{dataset.root}: none of the {len(truth)} image(s) of split {split!r} could be read{detail}"
        )
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


def _predict_files(predictor, files: list[str], report: BatchReport, progress: Callable[[int], None] | None) -> list:
    """Predictions of the readable files, in order, one batch at a time (for progress)."""
    predictions = []
    for start in range(0, len(files), predictor.batch_size):
        chunk = files[start : start + predictor.batch_size]
        predictions.extend(predictor.predict(chunk, report=report))
        if progress:
            progress(len(chunk))
    return predictions


def _binary_decision(card: ModelCard) -> tuple[str | None, float | None]:
    """(positive class, card threshold or None) of a binary model; (None, None) otherwise."""
    if len(card.classes) != 2:
        return None, None
    positive = next(iter(card.thresholds), None) or positive_class(card.classes)
    return positive, card.thresholds.get(positive)


# --- choosing and storing a threshold --------------------------------------------------------


def parse_threshold_choice(choice: str | float) -> str | float:
    """``"best-f1"`` or a probability in [0, 1] (numbers may come as text, e.g. from the CLI).

    Args:
        choice: what the user asked for.

    Returns:
        ``BEST_F1`` or the probability as a float.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(choice, str) and choice.strip().lower() == BEST_F1:
        return BEST_F1
    try:
        value = float(choice)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:
        raise ConfigError(f"threshold {choice!r} is not {BEST_F1} or a probability in [0, 1] (e.g. 0.35)")
    return value


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


def binary_positive(bundle: Bundle) -> str:
    """The positive class of a binary classification bundle (the one its threshold is about).

    Args:
        bundle: the opened bundle.

    Returns:
        The class name: the card's threshold key, else ``card.positive_class``.

    Raises:
        ConfigError: not a binary classifier (thresholds would not apply).
    """
    card = bundle.card
    if card.task != "classify" or len(card.classes) != 2:
        raise _not_binary(bundle.path, card.classes)
    return _binary_decision(card)[0]


def _not_binary(where: str | Path, classes: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"{where}: a decision threshold applies to binary classifiers only; this model has "
        f"{len(classes)} classes ({', '.join(classes)}) and predicts the most probable one"
    )


def save_threshold(bundle: str | Path | Bundle, threshold: float) -> ModelCard:
    """Store ``{positive class: threshold}`` in a binary bundle's card (segmentation: the defect
    probability threshold of its post-processing; anomaly: the normalised score at which an image is
    anomalous), rewriting it in place.

    Args:
        bundle: bundle folder, ``.inspekt`` file, run folder or an opened ``Bundle``.
        threshold: the probability from which the positive class (a defect pixel) is predicted.

    Returns:
        The new card (the other members are copied byte for byte).

    Raises:
        BundleError: the bundle cannot be opened or rewritten.
        ConfigError: not a binary classifier or segmentation model, or a threshold outside [0, 1].
    """
    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    value = parse_threshold_choice(threshold)
    if value == BEST_F1:
        raise ConfigError("save_threshold needs a number; use choose_threshold to find the best-F1 one")
    if opened.card.task == "segment":
        post = (opened.card.postprocess or PostProcess()).model_copy(update={"threshold": float(value)})
        card = opened.card.model_copy(update={"postprocess": post})
    elif opened.card.task == "anomaly":
        card = opened.card.model_copy(
            update={"anomaly": opened.card.anomaly.model_copy(update={"decision": float(value)})}
        )
    else:
        card = opened.card.model_copy(update={"thresholds": {binary_positive(opened): float(value)}})
    copy_bundle(opened, opened.path, archive=opened.path.is_file(), overwrite=True, card=card)
    return card


# --- rendering -------------------------------------------------------------------------------


def write_json(result: EvalResult | SegEvalResult, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as JSON (``path`` may be an fsspec URL)."""
    path = storage.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return path


def write_csv(result: EvalResult | SegEvalResult, path: str | Path) -> Path:
    """Write the per-image rows as CSV (classify: path, true, predicted, correct, score_<class> ...;
    segment: path, label, defective, verdict, score, iou, tp, fp, fn, components); ``path`` may be a URL."""
    import io

    path = storage.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(result.rows[0]) if result.rows else ["path"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(result.rows)
    path.write_bytes(text.getvalue().encode("utf-8"))  # bytes: the CSV line ends stay exactly \r\n
    return path
