"""Detection metrics: COCO mAP (pycocotools' ``COCOeval`` is the reference: mAP@0.5 and mAP@0.5:0.95
over 101 recall points, up to 100 boxes per image), per-class AP and PR curves, and the counts at a
score threshold (boxes found and missed, images with any defect)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from inspekt.tasks.detect.boxes import BoxArray, match
from inspekt.tasks.shared import inspection_rates, ratio


def _coco(truths: Sequence[BoxArray], found: Sequence[np.ndarray], n_classes: int):
    from pycocotools.coco import COCO

    images = [{"id": i} for i in range(len(truths))]
    categories = [{"id": c} for c in range(n_classes)]
    annotations, detections = [], []
    for i, (truth, dets) in enumerate(zip(truths, found)):
        for x0, y0, x1, y1, c in truth:
            w, h = float(x1 - x0), float(y1 - y0)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "category_id": int(c), "bbox": [float(x0), float(y0), w, h],
                 "area": w * h, "iscrowd": 0}
            )  # fmt: skip
        for x0, y0, x1, y1, c, s in dets:
            box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            detections.append({"image_id": i, "category_id": int(c), "bbox": box, "score": float(s)})
    gt = COCO()
    gt.dataset = {"images": images, "categories": categories, "annotations": annotations}
    gt.createIndex()
    dt = COCO()
    dt.dataset = {"images": images, "categories": categories, "annotations": []}
    for k, det in enumerate(detections, start=1):
        x, y, w, h = det["bbox"]
        dt.dataset["annotations"].append(det | {"id": k, "area": w * h, "iscrowd": 0})
    dt.createIndex()
    return gt, dt


def coco_map(truths: Sequence[BoxArray], found: Sequence[np.ndarray], classes: Sequence[str]) -> dict:
    """COCO box metrics of one dataset.

    Args:
        truths: per image, its true boxes (K, 5: x0 y0 x1 y1 class).
        found: per image, the boxes found (K, 6: x0 y0 x1 y1 class score), at a low score floor.
        classes: the class names (index order).

    Returns:
        ``map50`` and ``map50_95`` (None when there is no true box), ``per_class`` rows (class, ap50,
        ap, boxes) and ``pr_curves`` (per class: recall points and precision at IoU 0.5).
    """
    from pycocotools.cocoeval import COCOeval

    n_true = np.bincount(np.concatenate([t[:, 4] for t in truths]).astype(int), minlength=len(classes))
    if not n_true.sum():
        return {"map50": None, "map50_95": None, "per_class": [], "pr_curves": {}}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt, dt = _coco(truths, found, len(classes))
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas, 100 boxes

    def mean(values: np.ndarray) -> float | None:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else None

    rows, curves = [], {}
    for k, name in enumerate(classes):
        ap50, ap = (mean(precision[0, :, k]), mean(precision[:, :, k])) if n_true[k] else (None, None)
        rows.append({"class": name, "ap50": ap50, "ap": ap, "boxes": int(n_true[k])})
        if n_true[k]:
            curves[name] = {
                "recall": evaluator.params.recThrs.tolist(),
                "precision": precision[0, :, k].clip(0).tolist(),
            }
    present = precision[:, :, n_true > 0]
    return {"map50": mean(present[0]), "map50_95": mean(present), "per_class": rows, "pr_curves": curves}


def at_threshold(truths: Sequence[BoxArray], found: Sequence[np.ndarray], threshold: float, iou: float = 0.5) -> dict:
    """What a user sees at the card's score threshold: box precision / recall / F1 (matched at
    ``iou``), the image-level "any defect" precision / recall, and the mean count error per image."""
    tp = fp = fn = 0
    truth_any, found_any, count_error = [], [], []
    for truth, dets in zip(truths, found):
        kept = dets[dets[:, 5] >= threshold]
        hit, seen = match(kept, truth, iou)
        tp, fp, fn = tp + int(hit.sum()), fp + int((~hit).sum()), fn + int((~seen).sum())
        truth_any.append(len(truth) > 0)
        found_any.append(len(kept) > 0)
        count_error.append(abs(len(kept) - len(truth)))
    truth_any, found_any = np.asarray(truth_any), np.asarray(found_any)
    precision, recall = float(ratio(tp, tp + fp)), float(ratio(tp, tp + fn))
    return inspection_rates(truth_any, found_any) | {
        "box_precision": precision if tp + fp else None,
        "box_recall": recall if tp + fn else None,
        "box_f1": float(ratio(2 * precision * recall, precision + recall)) if tp + fn else None,
        "image_precision": float(ratio((truth_any & found_any).sum(), found_any.sum())) if found_any.any() else None,
        "image_recall": float(ratio((truth_any & found_any).sum(), truth_any.sum())) if truth_any.any() else None,
        "count_mae": float(np.mean(count_error)) if count_error else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def best_f1_threshold(truths: Sequence[BoxArray], found: Sequence[np.ndarray], iou: float = 0.5) -> float | None:
    """The score threshold with the best box F1 (matched at ``iou``), or None without true boxes."""
    n_true = sum(len(t) for t in truths)
    if not n_true:
        return None
    scores, hits = [], []
    for truth, dets in zip(truths, found):
        hit, _ = match(dets, truth, iou)
        scores.append(dets[:, 5])
        hits.append(hit)
    scores, hits = np.concatenate(scores), np.concatenate(hits)
    if not hits.any():
        return None
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    f1 = 2 * tp / (np.arange(1, len(order) + 1) + n_true)
    return float(scores[order][int(np.argmax(f1))])


def box_agreement(
    first: Sequence[np.ndarray], second: Sequence[np.ndarray], threshold: float, iou: float = 0.5
) -> float:
    """How far two detectors' boxes on the same images agree at a score threshold: twice the boxes
    matched to one of the other's (same class, ``iou`` or more) over all boxes of both (1: the same
    boxes everywhere, also when neither finds any)."""
    matched = total = 0
    for a, b in zip(first, second):
        a, b = a[a[:, 5] >= threshold], b[b[:, 5] >= threshold]
        hit, _ = match(b, a[:, :5], iou)
        matched, total = matched + int(hit.sum()), total + len(a) + len(b)
    return 2 * matched / total if total else 1.0
