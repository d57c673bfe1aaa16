"""Anomaly detection: learned from normal images only; a normalised score per image and an anomaly
map per pixel, both calibrated so that 0.5 is the threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspekt.card import ModelCard
from inspekt.tasks.base import Control, Table, Task, check_probability, fmt, min_area_error, region_cells, region_post
from inspekt.tasks.shared import INSPECTION_ROWS


class Anomaly(Task):
    """Anomaly detection: predictions, score / pixel thresholds, fitting, evaluation and reports."""

    name = "anomaly"
    thresholds = "normalised anomaly-score"
    default_model = "draem"
    model_defaults = frozenset({"epochs", "lr", "batch"})  # each method has its own
    train_summary = "Train an anomaly detector on normal images only; prints the bundle path."
    train_options = tuple("data model normal epochs imgsz batch lr calibration seed out name exist_ok".split())
    train_params = {
        "weights": "padim / patchcore: a local pretrained backbone file (.safetensors); without it the backbone is "
        "random."
    }
    train_help = {
        "data": "Dataset with normal images: MVTec (train/good, test/<type>, ground_truth/), class folders or a "
        "CSV with a normal class (not needed with --resume).",
        "model": "draem (default), ae_ssim, template_ratio, padim, patchcore (see `inspekt models --task anomaly`).",
        "epochs": "Epochs of the methods that train (default: the method's own).",
        "batch": "Batch size (default: the method's own).",
        "lr": "Learning rate (default: the method's own).",
    }
    train_example = "quantile=0.99 groups=none"
    headline = ("image_auroc", "image_aupr", "f1", "precision", "recall", "pixel_auroc", "aupro")
    figures = "the score histogram and the worst false positives / negatives (input | anomaly map | reconstruction)"

    def fits(self, ds) -> bool:
        return ds.normal_class is not None

    def check_card(self, card: ModelCard) -> None:
        if card.anomaly is None:
            raise ValueError("anomaly models need the 'anomaly' section (thresholds and score normalisation)")

    def with_threshold(self, card, threshold, min_area, pixel_threshold):
        check_probability("--threshold", threshold, "a normalised score")
        check_probability("--pixel-threshold", pixel_threshold, "a normalised score")
        if min_area is not None and min_area < 0:
            raise min_area_error(min_area, self.name)
        if min_area is not None:
            card = card.model_copy(update={"postprocess": region_post(card, min_area)})
        changes = {k: v for k, v in (("decision", threshold), ("pixel_decision", pixel_threshold)) if v is not None}
        return card.model_copy(update={"anomaly": card.anomaly.model_copy(update=changes)})

    def store_threshold(self, card: ModelCard, value: float) -> ModelCard:
        return card.model_copy(update={"anomaly": card.anomaly.model_copy(update={"decision": float(value)})})

    def controls(self, card: ModelCard) -> list[Control]:
        return [
            Control(
                "Anomaly threshold",
                "threshold",
                float(card.anomaly.decision),
                "normalised anomaly score from which an image is anomalous (0.5: the threshold calibrated at training)",
            ),
            Control(
                "Pixel threshold",
                "pixel_threshold",
                float(card.anomaly.pixel_decision),
                "normalised anomaly-map value from which a pixel is anomalous",
            ),
        ]

    def confidence(self, reference, prediction) -> tuple[str, float]:
        return "anomaly score", float(prediction.score)

    def predict(self, card, images, sources, run, batch_size):
        from inspekt.tasks.anomaly.predict import predict_anomaly

        return predict_anomaly(card, images, sources, run, batch_size)

    def cells(self, prediction, card, topk, precise):
        return region_cells(prediction, "anomaly_area_pct", "anomaly score", precise)

    def training(self, cfg, ds):
        from inspekt.tasks.anomaly.train import AnomalyTraining

        return AnomalyTraining(cfg, ds)

    def evaluate(self, predictor, dataset, split, progress=None):
        from inspekt.tasks.anomaly.evaluate import evaluate_anomaly

        return evaluate_anomaly(predictor, dataset, split, progress)

    def check_threshold_choice(self, card: ModelCard, choice: str | float) -> str | float:
        from inspekt.tasks.shared import parse_threshold_choice

        return parse_threshold_choice(choice)

    def choose_threshold(self, result: Any, choice: str | float) -> float:
        from inspekt.tasks.anomaly.evaluate import choose_anomaly_threshold

        return choose_anomaly_threshold(result, choice)

    def rescore(self, result: Any, threshold: float) -> Any:
        from inspekt.tasks.anomaly.evaluate import rescore_anomaly

        return rescore_anomaly(result, threshold)

    def threshold_note(self, result: Any) -> str | None:
        from inspekt.errors import ConfigError
        from inspekt.tasks.anomaly.evaluate import choose_anomaly_threshold, rescore_anomaly
        from inspekt.tasks.shared import BEST_F1, threshold_note

        try:
            value = choose_anomaly_threshold(result, BEST_F1)
        except ConfigError:  # only one kind of image: no F1 to compare
            return None
        return threshold_note(result.metrics, rescore_anomaly(result, value).metrics, value)

    def write_plots(self, result, predictor, dataset, folder: Path, limit: int | None = None) -> list[Path]:
        from inspekt.tasks.anomaly.evaluate import WORST_LIMIT, write_plots

        return write_plots(result, predictor, folder, limit=WORST_LIMIT if limit is None else limit)

    def summary(self, result: Any) -> list[Table]:
        m = result.metrics
        rows = [
            (name, fmt(m[key]))
            for name, key in (
                ("image AUROC", "image_auroc"),
                ("image AUPR", "image_aupr"),
                ("F1 at the threshold", "f1"),
                ("precision", "precision"),
                ("recall", "recall"),
                ("accuracy", "accuracy"),
                ("pixel AUROC", "pixel_auroc"),
                ("AUPRO (FPR <= 0.3)", "aupro"),
                *INSPECTION_ROWS,
            )
        ]
        rows.append(("confusion", f"TP {m['tp']}  FP {m['fp']}  TN {m['tn']}  FN {m['fn']}"))
        head = (
            f"{len(result.rows)} images ({m['tp'] + m['fn']} anomalous, normal class {result.normal}), "
            f"{len(result.skipped)} skipped"
        )
        return [Table("metrics", ("metric", "value"), rows, note=head)]
