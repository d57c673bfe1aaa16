"""Segmentation metrics, tallied over images as they stream past: IoU, Dice, pixel and image
precision / recall, the threshold with the best defect IoU."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inspekt.tasks.shared import confusion_counts, inspection_rates, ratio


class SegmentationTally:
    """Accumulates a segmentation model's results image by image: the pixel confusion matrix,
    each image's IoU, and image-level scores (an image is defective when its mask has any defect
    pixel). ``metrics`` turns them into the report; validation and ``inspekt eval`` share it.
    Given the defect probability maps, it also finds the threshold with the best defect IoU."""

    BINS = 100  # defect-probability histogram bins: thresholds 0.00, 0.01, ..., 0.99

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.image_iou: list[float] = []
        self.truth: list[bool] = []
        self.score: list[float] = []
        self.verdict: list[bool] = []
        self.histogram = np.zeros((2, self.BINS), dtype=np.int64)  # background / defect pixels per probability bin

    def add(
        self, target: np.ndarray, predicted: np.ndarray, score: float, verdict: bool, defect: np.ndarray | None = None
    ) -> float:
        """Add one image and return its IoU.

        Args:
            target: HxW true class indices (0 = background).
            predicted: HxW predicted class indices, same size.
            score: the image-level defect score (largest defect probability).
            verdict: whether the prediction flags a defect.
            defect: optional HxW defect probability map (1 - background), for ``best_threshold``.

        Returns:
            The image's IoU: the mean over the defect classes present in the truth or the
            prediction; 1.0 when neither has any defect (a correct empty mask).
        """
        if target.shape != predicted.shape:
            raise ValueError(f"target {target.shape} and prediction {predicted.shape} differ in size")
        cm = confusion_counts(target.ravel().astype(np.int64), predicted.ravel().astype(np.int64), self.n_classes)
        self.confusion += cm
        tp, fp, fn = np.diag(cm)[1:], cm.sum(0)[1:] - np.diag(cm)[1:], cm.sum(1)[1:] - np.diag(cm)[1:]
        present = (tp + fp + fn) > 0
        iou = float(ratio(tp, tp + fp + fn)[present].mean()) if present.any() else 1.0
        self.image_iou.append(iou)
        self.truth.append(bool(cm[1:].sum()))
        self.score.append(float(score))
        self.verdict.append(bool(verdict))
        if defect is not None:
            bins = np.minimum((defect.ravel() * self.BINS).astype(np.int64), self.BINS - 1)
            truth = (target.ravel() > 0).astype(np.int64)
            self.histogram += np.bincount(truth * self.BINS + bins, minlength=2 * self.BINS).reshape(2, self.BINS)
        return iou

    def best_threshold(self, low: float = 0.05, high: float = 0.95) -> tuple[float, float] | None:
        """The defect-probability threshold in [low, high] with the best "any defect" IoU (before
        clean-up), and that IoU; None when no defect map was added or no pixel is a defect.

        Pixels in histogram bins ``>= k`` are the ones a threshold of ``k / BINS`` keeps."""
        background, defect = self.histogram
        if not defect.any():
            return None
        tp, fp = np.cumsum(defect[::-1])[::-1], np.cumsum(background[::-1])[::-1]
        iou = ratio(tp, fp + defect.sum())
        candidates = np.arange(round(low * self.BINS), round(high * self.BINS) + 1)
        k = int(candidates[np.argmax(iou[candidates])])
        return k / self.BINS, float(iou[k])

    def metrics(self, classes: Sequence[str]) -> dict:
        """Dataset-level IoU / Dice per defect class and their mean, the IoU of "any defect" vs
        background, pixel precision / recall, the mean per-image IoU, and image-level AUROC (from
        the score) and precision / recall / F1 (of the verdict). JSON-ready; None where undefined."""
        from sklearn.metrics import roc_auc_score

        cm = self.confusion
        tp, predicted, actual = np.diag(cm), cm.sum(0), cm.sum(1)
        fp, fn = predicted - tp, actual - tp
        iou, dice = ratio(tp, tp + fp + fn), ratio(2 * tp, 2 * tp + fp + fn)
        precision, recall = ratio(tp, predicted), ratio(tp, actual)
        any_tp, any_pred, any_true = cm[1:, 1:].sum(), cm[:, 1:].sum(), cm[1:, :].sum()
        truth, verdict = np.array(self.truth, dtype=bool), np.array(self.verdict, dtype=bool)
        v_tp = int((truth & verdict).sum())
        v_precision, v_recall = ratio(v_tp, verdict.sum()), ratio(v_tp, truth.sum())
        auroc = None
        if truth.any() and not truth.all():
            auroc = float(roc_auc_score(truth, np.array(self.score)))
        return {
            "n_images": len(self.truth),
            "n_defective": int(truth.sum()),
            "iou": float(iou[1:].mean()),
            "dice": float(dice[1:].mean()),
            "defect_iou": float(ratio(any_tp, any_pred + any_true - any_tp)),
            "pixel_precision": float(ratio(any_tp, any_pred)),
            "pixel_recall": float(ratio(any_tp, any_true)),
            "per_image_iou": float(np.mean(self.image_iou)) if self.image_iou else 0.0,
            "image_auroc": auroc,
            "image_precision": float(v_precision),
            "image_recall": float(v_recall),
            "image_f1": float(ratio(2 * v_precision * v_recall, v_precision + v_recall)),
            **inspection_rates(truth, verdict),
            "per_class": [
                {
                    "class": name,
                    "iou": float(i),
                    "dice": float(d),
                    "precision": float(p),
                    "recall": float(r),
                    "pixels": int(a),
                }
                for name, i, d, p, r, a in zip(classes[1:], iou[1:], dice[1:], precision[1:], recall[1:], actual[1:])
            ],
            "confusion": cm.tolist(),
        }
