"""Evaluate a detection bundle on a dataset with boxes (or masks, read into boxes the way the model
was trained): COCO mAP@0.5 and mAP@0.5:0.95 (``COCOeval``), per-class AP and PR curves, box and
image-level ("any defect") precision / recall at the card's score threshold, a per-image table, and
a gallery of the images with false positives or missed boxes.

Predictions come from the one ``Predictor`` at the original image size (tiled where the card says);
for mAP it keeps boxes down to a low score floor, everything else is decided at the card's threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspekt.data import Dataset
from inspekt.errors import DatasetError
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.base import nothing_scored, predict_split
from inspekt.tasks.detect.boxes import BoxRule, match
from inspekt.tasks.detect.metrics import at_threshold, coco_map
from inspekt.tasks.detect.train import SCORE_FLOOR

GALLERY_LIMIT = 24


@dataclass
class DetectEvalResult:
    """A detection model's results on a dataset split.

    Attributes:
        bundle, data, split: what was evaluated.
        classes: the model's box classes.
        threshold: the card's score threshold (what ``metrics``' counts are decided at).
        metrics: map50, map50_95, per_class (ap50, ap, boxes), pr_curves, box / image precision and recall.
        rows: per image: path, true and found boxes, tp / fp / fn at the threshold, any-defect truth and verdict.
        found: per image, every box found down to the score floor (x0 y0 x1 y1 class score).
        truths: per image, its true boxes (x0 y0 x1 y1 class).
        times: per-image prediction time in ms.
        skipped: unreadable images and unusable annotations.
    """

    bundle: str
    data: str
    split: str
    classes: tuple[str, ...]
    threshold: float
    metrics: dict
    rows: list[dict]
    found: list[np.ndarray]
    truths: list[np.ndarray]
    times: list[float]
    skipped: list[SkippedFile] = field(default_factory=list)
    task: str = "detect"

    def errors(self, limit: int | None = GALLERY_LIMIT) -> list[int]:
        """Row indices of the images with false positives or missed boxes, most errors first."""
        order = sorted(range(len(self.rows)), key=lambda i: -(self.rows[i]["fp"] + self.rows[i]["fn"]))
        return [i for i in order if self.rows[i]["fp"] + self.rows[i]["fn"]][:limit]

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-image rows)."""
        return {
            "bundle": self.bundle,
            "data": self.data,
            "split": self.split,
            "task": self.task,
            "classes": list(self.classes),
            "threshold": self.threshold,
            "n_images": len(self.rows),
            "n_skipped": len(self.skipped),
            "metrics": self.metrics,
            "ms_per_image": round(float(np.mean(self.times)), 3) if self.times else None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def _found(prediction, classes: tuple[str, ...]) -> np.ndarray:
    rows = [(*b["box"], classes.index(b["class"]), b["score"]) for b in prediction.boxes or ()]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 6)


def evaluate_detect(
    predictor, dataset: Dataset, split: str, progress: Callable[[int], None] | None = None
) -> DetectEvalResult:
    """Predict every image of ``dataset`` (one split, already selected) and score its boxes.

    Raises:
        DatasetError: the dataset has neither boxes nor masks, or no image could be scored.
    """
    card = predictor.card
    rule = BoxRule.from_card(card)
    if not any(s.boxes is not None for s in dataset.samples) and not (rule.from_masks and dataset.n_masks):
        raise DatasetError(
            f"{dataset.root}: no box annotations (or masks, for a model trained on masks) in split {split!r}, "
            "so there is nothing to score a detection model against; give a dataset with boxes"
        )
    threshold = float(card.postprocess.threshold) if card.postprocess else 0.3
    floor = predictor.with_threshold(threshold=min(SCORE_FLOOR, threshold))
    report, rows, found, truths, times = BatchReport(), [], [], [], []
    for sample, prediction in predict_split(floor, dataset, report, progress):
        try:
            truth = rule.boxes(sample, prediction.extra["image_hw"])
        except DatasetError as exc:
            report.skipped.append(SkippedFile(prediction.source, str(exc)))
            continue
        boxes = _found(prediction, card.classes)
        kept = boxes[boxes[:, 5] >= threshold]
        hit, seen = match(kept, truth)
        rows.append(
            {
                "path": prediction.source,
                "true_boxes": len(truth),
                "found_boxes": len(kept),
                "tp": int(hit.sum()),
                "fp": int((~hit).sum()),
                "fn": int((~seen).sum()),
                "defective": bool(len(truth)),
                "verdict": bool(len(kept)),
                "score": round(float(prediction.score), 6),
            }
        )
        found.append(boxes)
        truths.append(truth)
        times.append(prediction.time_ms)
    if not rows:
        raise nothing_scored(dataset, len(dataset), split, report)
    metrics = coco_map(truths, found, card.classes) | at_threshold(truths, found, threshold)
    metrics |= {"n_images": len(rows), "n_defective": sum(r["defective"] for r in rows)}
    return DetectEvalResult(
        str(predictor.bundle.path), str(dataset.root), split, card.classes, threshold, metrics, rows, found, truths,
        times, list(report.skipped),
    )  # fmt: skip


def write_plots(result: DetectEvalResult, folder: str | Path, limit: int = GALLERY_LIMIT) -> list[Path]:
    """PR curves (IoU 0.5, one line per class) and the gallery of images with errors at the score
    threshold: found boxes in their class colours, missed true boxes in green, each named in the file."""
    from inspekt.draw import banner, draw_boxes
    from inspekt.figures import new_figure, save_figure
    from inspekt.io import load_image, save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    curves = result.metrics["pr_curves"]
    if curves:
        fig = new_figure(6, 5)
        ax = fig.subplots()
        for name, curve in curves.items():
            ap = next(r["ap50"] for r in result.metrics["per_class"] if r["class"] == name)
            ax.plot(curve["recall"], curve["precision"], label=f"{name} (AP50 {ap:.3f})")
        ax.set(xlabel="recall", ylabel="precision", title="precision-recall at IoU 0.5", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower left")
        written.append(save_figure(fig, folder / "pr_curves.png"))
    for rank, i in enumerate(result.errors(limit), start=1):
        row, truth, boxes = result.rows[i], result.truths[i], result.found[i]
        kept = boxes[boxes[:, 5] >= result.threshold]
        _, seen = match(kept, truth)
        image = load_image(row["path"], mode="keep")
        drawn = [
            {"class": result.classes[int(c)], "score": float(s), "box": [x0, y0, x1, y1]}
            for x0, y0, x1, y1, c, s in kept
        ]
        missed = [
            {"class": "missed " + result.classes[int(c)], "box": [x0, y0, x1, y1]} for x0, y0, x1, y1, c in truth[~seen]
        ]
        out = draw_boxes(draw_boxes(image, drawn, result.classes), missed, result.classes, colour=(0, 255, 0))
        text = f"FP {row['fp']} FN {row['fn']} (true {row['true_boxes']}, found {row['found_boxes']})"
        name = f"{rank:03d}_fp{row['fp']}_fn{row['fn']}_{Path(row['path']).stem}.png"
        written.append(save_image(folder / name, banner(out, text)))
    return written
