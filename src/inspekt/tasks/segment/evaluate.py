"""Evaluate a segmentation bundle on a dataset with masks: IoU / Dice per class and mean (dataset
level and per image), pixel precision / recall, image-level detection derived from the masks, a
per-image table, and overlays of the worst images.

Predictions come from the one ``Predictor`` at the original image size (tiled where the card
says), post-processed exactly as users get them; masks are read with the rule the model was
trained with (``card.masks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspekt.data import Dataset
from inspekt.data.masks import MaskRule
from inspekt.errors import DatasetError
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.base import nothing_scored, predict_split
from inspekt.tasks.segment.metrics import SegmentationTally

WORST_LIMIT = 24


@dataclass
class SegEvalResult:
    """A segmentation model's results on a dataset split.

    Attributes:
        bundle, data, split: what was evaluated.
        classes: the model's classes (background first).
        metrics: ``SegmentationTally.metrics`` (iou, dice, defect_iou, per_class, image_auroc, ...).
        rows: per image: path, label (folder / CSV label), defective (truth), verdict, score, iou,
            tp / fp / fn (defect pixels vs background), components.
        times: per-image prediction time in ms.
        skipped: unreadable images and unusable masks.
        postprocess: the card's post-processing the predictions used (threshold, min_area, kernel).
    """

    bundle: str
    data: str
    split: str
    classes: tuple[str, ...]
    metrics: dict
    rows: list[dict]
    times: list[float]
    postprocess: dict
    skipped: list[SkippedFile] = field(default_factory=list)
    task: str = "segment"

    def worst(self, limit: int | None = WORST_LIMIT) -> list[int]:
        """Row indices of the worst images: lowest IoU first (wrong verdicts before right ones on ties)."""
        order = sorted(
            range(len(self.rows)),
            key=lambda i: (self.rows[i]["iou"], self.rows[i]["verdict"] == self.rows[i]["defective"]),
        )
        order = [i for i in order if self.rows[i]["iou"] < 1.0]
        return order[:limit]

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-image rows)."""
        return {
            "bundle": self.bundle,
            "data": self.data,
            "split": self.split,
            "task": self.task,
            "classes": list(self.classes),
            "n_images": len(self.rows),
            "n_skipped": len(self.skipped),
            "postprocess": self.postprocess,
            "metrics": self.metrics,
            "ms_per_image": round(float(np.mean(self.times)), 3) if self.times else None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def evaluate_segment(
    predictor, dataset: Dataset, split: str, progress: Callable[[int], None] | None = None
) -> SegEvalResult:
    """Predict every image of ``dataset`` (one split, already selected) and score it against its mask.

    Raises:
        DatasetError: the dataset has no masks, or no image could be scored.
    """
    card = predictor.card
    if not dataset.n_masks:
        raise DatasetError(
            f"{dataset.root}: no mask files in split {split!r}, so there is nothing to score a "
            "segmentation model against; give a dataset with masks (images/ + masks/, MVTec ...)"
        )
    rule, tally = MaskRule.from_card(card), SegmentationTally(len(card.classes))
    report, rows, times = BatchReport(), [], []
    for sample, prediction in predict_split(predictor, dataset, report, progress):
        try:
            target = rule.target(sample, prediction.mask.shape)
        except DatasetError as exc:
            report.skipped.append(SkippedFile(prediction.source, str(exc)))
            continue
        verdict = prediction.extra["verdict"] != "ok"
        iou = tally.add(target, prediction.mask, prediction.score, verdict)
        truth, predicted = target > 0, prediction.mask > 0
        rows.append(
            {
                "path": prediction.source,
                "label": sample.label or "",
                "defective": bool(truth.any()),
                "verdict": verdict,
                "score": round(prediction.score, 6),
                "iou": round(iou, 6),
                "tp": int((truth & predicted).sum()),
                "fp": int((~truth & predicted).sum()),
                "fn": int((truth & ~predicted).sum()),
                "components": len(prediction.extra["components"]),
            }
        )
        times.append(prediction.time_ms)
    if not rows:
        raise nothing_scored(dataset, len(dataset), split, report)
    post = card.postprocess.model_dump() if card.postprocess else {}
    return SegEvalResult(
        str(predictor.bundle.path),
        str(dataset.root),
        split,
        card.classes,
        tally.metrics(card.classes),
        rows,
        times,
        post,
        list(report.skipped),
    )


def write_worst_overlays(
    result: SegEvalResult, predictor, dataset: Dataset, folder: str | Path, limit: int = WORST_LIMIT
) -> list[Path]:
    """Overlays of the worst images: the prediction filled and outlined in its class colours, the
    true mask outlined in green; file names start with the rank and the image's IoU."""
    import cv2

    from inspekt.draw import banner, overlay_mask
    from inspekt.io import load_image, save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rule, samples = MaskRule.from_card(predictor.card), {str(s.path): s for s in dataset.samples}
    written = []
    for rank, index in enumerate(result.worst(limit), start=1):
        row = result.rows[index]
        image = load_image(row["path"], mode="keep")
        (prediction,) = predictor.predict_arrays([image], [row["path"]])
        target = rule.target(samples[row["path"]], image.shape[:2])
        out = overlay_mask(image, prediction.mask)
        contours, _ = cv2.findContours((target > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 255, 0), max(1, round(max(target.shape) / 400)), cv2.LINE_AA)
        text = f"IoU {row['iou']:.2f} truth {'defect' if row['defective'] else 'ok'} -> {prediction.extra['verdict']}"
        name = f"{rank:03d}_iou{row['iou']:.2f}_{Path(row['path']).stem}.png"
        written.append(save_image(folder / name, banner(out, text)))
    return written
