"""Evaluate an anomaly bundle on labelled images (normal class vs anything else): image AUROC, AUPR
and F1 at the stored threshold; pixel AUROC and AUPRO where masks exist; a per-image table; the score
histogram of normal vs anomalous images; and the worst false positives / negatives with their maps.

Predictions come from the one ``Predictor`` at the original image size, exactly as users get them.
Pixel metrics are accumulated as histograms (``anomaly_metrics.PixelTally``), so memory does not
grow with the test set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from inspekt.data import Dataset
from inspekt.errors import ConfigError, DatasetError
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.anomaly.metrics import PixelTally, truth_mask
from inspekt.tasks.anomaly.predict import ANOMALY
from inspekt.tasks.base import nothing_scored, predict_split
from inspekt.tasks.shared import inspection_rates

WORST_LIMIT = 24


@dataclass
class AnomalyEvalResult:
    """An anomaly model's results on a dataset split.

    Attributes:
        bundle, data, split: what was evaluated.
        normal: the dataset's normal class.
        metrics: image_auroc, image_aupr, f1, precision, recall, accuracy at the stored threshold,
            tp / fp / tn / fn, and pixel_auroc / aupro when masks exist.
        rows: per image: path, label, anomalous (truth), score (normalised), raw_score, verdict, correct,
            anomaly_area_pct.
        times: per-image prediction time in ms.
        skipped: unreadable images and unusable masks.
    """

    bundle: str
    data: str
    split: str
    normal: str
    metrics: dict
    rows: list[dict]
    times: list[float]
    skipped: list[SkippedFile] = field(default_factory=list)
    task: str = "anomaly"

    def worst(self, kind: str, limit: int = WORST_LIMIT) -> list[int]:
        """Row indices of the worst false positives ("fp": normal images with the highest scores) or
        false negatives ("fn": anomalous images with the lowest scores)."""
        wanted = kind == "fn"
        wrong = [i for i, r in enumerate(self.rows) if r["anomalous"] == wanted and not r["correct"]]
        return sorted(wrong, key=lambda i: self.rows[i]["raw_score"], reverse=kind == "fp")[:limit]

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised scores of the normal images and of the anomalous ones."""
        normal = np.array([r["score"] for r in self.rows if not r["anomalous"]])
        return normal, np.array([r["score"] for r in self.rows if r["anomalous"]])

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-image rows)."""
        return {
            "bundle": self.bundle,
            "data": self.data,
            "split": self.split,
            "task": self.task,
            "normal": self.normal,
            "n_images": len(self.rows),
            "n_skipped": len(self.skipped),
            "metrics": self.metrics,
            "ms_per_image": round(float(np.mean(self.times)), 3) if self.times else None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def image_metrics(truth: np.ndarray, raw: np.ndarray, verdict: np.ndarray) -> dict:
    """Image AUROC / AUPR (from raw scores) and the confusion at the stored threshold (from verdicts)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    tp = int((truth & verdict).sum())
    fp = int((~truth & verdict).sum())
    fn = int((truth & ~verdict).sum())
    tn = int((~truth & ~verdict).sum())
    both = truth.any() and (~truth).any()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "image_auroc": round(float(roc_auc_score(truth, raw)), 4) if both else None,
        "image_aupr": round(float(average_precision_score(truth, raw)), 4) if both else None,
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "accuracy": round((tp + tn) / len(truth), 4),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    } | inspection_rates(truth, verdict)


def evaluate_anomaly(
    predictor, dataset: Dataset, split: str, progress: Callable[[int], None] | None = None
) -> AnomalyEvalResult:
    """Predict every image of ``dataset`` (one split, already selected) and score it.

    Raises:
        DatasetError: no normal class, unlabelled images, or no image could be scored.
    """
    normal = dataset.normal_class or predictor.card.classes[0]
    if normal not in dataset.classes and dataset.classes:
        raise DatasetError(
            f"{dataset.root}: no normal class (good, ok, normal, free ...) among "
            f"{', '.join(dataset.classes)}; name the normal images' folder like the model's "
            f"({predictor.card.classes[0]})"
        )
    unlabelled = [s for s in dataset.samples if s.label is None]
    if unlabelled:
        raise DatasetError(
            f"{dataset.root}: {len(unlabelled)} image(s) have no label (e.g. {unlabelled[0].path}); "
            "anomaly evaluation needs class folders, MVTec test/<type>/ folders or a CSV label"
        )
    report, rows, times, tally = BatchReport(), [], [], PixelTally()
    for sample, prediction in predict_split(predictor, dataset, report, progress):
        anomalous = sample.label != normal
        if dataset.n_masks and not _tally_pixels(tally, prediction.heatmap, sample, anomalous, report):
            continue
        verdict = prediction.label == ANOMALY
        rows.append(
            {
                "path": prediction.source,
                "label": sample.label,
                "anomalous": anomalous,
                "score": float(prediction.score),  # unrounded: rescoring decides as the Predictor does
                "raw_score": prediction.extra["raw_score"],
                "verdict": prediction.extra["verdict"],
                "correct": verdict == anomalous,
                "anomaly_area_pct": prediction.extra["anomaly_area_pct"],
            }
        )
        times.append(prediction.time_ms)
    if not rows:
        raise nothing_scored(dataset, len(dataset), split, report)
    truth = np.array([r["anomalous"] for r in rows])
    verdict = np.array([r["verdict"] == ANOMALY for r in rows])
    metrics = image_metrics(truth, np.array([r["raw_score"] for r in rows]), verdict)
    metrics |= {"pixel_auroc": _round(tally.auroc()), "aupro": _round(tally.aupro())}
    return AnomalyEvalResult(
        str(predictor.bundle.path), str(dataset.root), split, normal, metrics, rows, times, list(report.skipped)
    )


def choose_anomaly_threshold(result: AnomalyEvalResult, choice: str | float) -> float:
    """A normalised decision threshold: the given number, or "best-f1" on this result's scores.

    Raises:
        ConfigError: best-f1 on a result without both normal and anomalous images, or where it would flag
            every normal image.
    """
    from inspekt.tasks.anomaly.metrics import best_f1_threshold
    from inspekt.tasks.shared import BEST_F1, parse_threshold_choice

    choice = parse_threshold_choice(choice)  # "Best-F1 " as the CLI accepts it
    if choice != BEST_F1:
        return float(choice)
    normal, anomalous = result.scores()
    if not len(normal) or not len(anomalous):
        raise ConfigError("--set-threshold best-f1 needs both normal and anomalous images in the evaluated split")
    best = min(1.0, max(0.0, best_f1_threshold(normal, anomalous)[0]))
    if bool(np.all(normal >= best)):  # F1 counts defects only: with few normal images it can reject them all
        keep = float(np.quantile(normal, 0.95))
        raise ConfigError(
            f"best-f1 on these images would flag every one of the {len(normal)} normal images (F1 rewards the "
            f"{len(anomalous)} anomalous ones only), rejecting every good part; give a number instead, e.g. "
            f"{keep:.4g}, which passes 95% of these normal images, or evaluate on a split with more normal images"
        )
    scores = np.concatenate([normal, anomalous])
    rounded = round(best, 6)  # a readable number in the card, unless it would decide one of these images otherwise
    return rounded if np.array_equal(scores >= rounded, scores >= best) else best


def rescore_anomaly(result: AnomalyEvalResult, threshold: float) -> AnomalyEvalResult:
    """The same predictions decided at another normalised threshold (an image is anomalous from it)."""
    normal = next((r["verdict"] for r in result.rows if r["verdict"] != ANOMALY), result.normal)
    flagged = [r["score"] >= threshold for r in result.rows]
    rows = [
        r | {"verdict": ANOMALY if f else normal, "correct": f == r["anomalous"]} for r, f in zip(result.rows, flagged)
    ]
    truth = np.array([r["anomalous"] for r in rows])
    verdict = np.array([r["verdict"] == ANOMALY for r in rows])
    metrics = result.metrics | image_metrics(truth, np.array([r["raw_score"] for r in rows]), verdict)
    return replace(result, rows=rows, metrics=metrics)


def _tally_pixels(tally: PixelTally, heat: np.ndarray, sample, anomalous: bool, report: BatchReport) -> bool:
    """Add one image's map to the pixel tally (normal images: all pixels normal; anomalous images
    without a mask file add nothing); False when its mask is unusable (reported as skipped)."""
    try:
        truth = truth_mask(sample, heat.shape) if anomalous else np.zeros(heat.shape, bool)
    except DatasetError as exc:
        report.skipped.append(SkippedFile(str(sample.path), str(exc)))
        return False
    if truth is not None:
        tally.add(heat, truth)
    return True


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_plots(result: AnomalyEvalResult, predictor, folder: str | Path, limit: int = WORST_LIMIT) -> list[Path]:
    """The score histogram (normalised scores, threshold marked) and panels of the worst false
    positives and negatives: image | anomaly map over it | reconstruction (when the model has one)."""
    from inspekt.draw import banner
    from inspekt.io import load_image, save_image
    from inspekt.tasks.anomaly.plots import plot_score_histogram

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    normal, anomalous = result.scores()
    decision = predictor.card.anomaly.decision
    written = [
        plot_score_histogram(
            normal,
            anomalous,
            decision,
            folder / "scores.png",
            title="anomaly scores",
            xlabel="normalised anomaly score",
        )
    ]
    fps, fns = result.worst("fp", limit), result.worst("fn", limit)
    worst = [(kind, found[k]) for k in range(limit) for kind, found in (("fp", fps), ("fn", fns)) if k < len(found)]
    for rank, (kind, index) in enumerate(worst[:limit], start=1):  # both kinds in turn, ``limit`` in all
        row = result.rows[index]
        image = load_image(row["path"], mode="keep")
        (prediction,) = predictor.predict_arrays([image], [row["path"]])
        panels = [
            banner(image, f"{row['label']} ({kind.upper()})"),
            banner(prediction.overlay(image), f"score {prediction.score:.2f}"),
        ]
        if prediction.reconstruction is not None:
            panels.append(banner(prediction.reconstruction, "reconstruction"))
        name = f"{rank:03d}_{kind}_{Path(row['path']).stem}.png"  # per-image panels: NNN_ (Task.write_plots)
        written.append(save_image(folder / name, np.concatenate(panels, axis=1)))
    return written
