"""Detection: boxes around every object (defect), each with its class and score, counted per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspekt.card import ModelCard, PostProcess
from inspekt.errors import ConfigError
from inspekt.tasks.base import Control, Table, Task, check_probability, fmt, min_area_error
from inspekt.tasks.shared import INSPECTION_ROWS


class Detect(Task):
    """Detection: predictions, the score threshold, training hooks, evaluation, reports."""

    name = "detect"
    score_axis = 1
    thresholds = "box score"
    default_model = "tiny_centernet"
    # benchmarks/detect.py: with the config's class defaults (30 epochs, patience 10 on a validation mAP that
    # jumps between epochs) magnetic_tile stopped at epoch 12 with test mAP@0.5 0.0001
    train_defaults = {
        "epochs": 40,
        "batch": 16,
        "lr": 0.004,
        "augment": "light",
        "patience": 100,
        "defect_crops": 0.8,
        "sampler": "balanced",
        "threshold": "auto",
    }
    int8_metrics = ("map50", "box_f1")
    int8_agreeing = "boxes"
    train_summary = (
        "Train a box detector (boxes, or masks read as one box per region); prints the bundle path. "
        "Ctrl-C keeps the best so far."
    )
    train_options = tuple(
        "data model pretrained epochs imgsz batch lr resize masks augment seed out name exist_ok".split()
    )
    train_params = {"backbone": "Encoder of the centernet model: a timm name (resnet18, efficientnet_b0, ...)."}
    train_help = {
        "data": "Dataset with boxes (Pascal VOC XML, YOLO .txt, COCO JSON) or masks (one box per region) "
        "(not needed with --resume).",
        "model": "tiny_centernet (default) or centernet with --backbone (see `inspekt models --task detect`).",
        "pretrained": "Starting weights: a .safetensors/.pth file (a whole model, or a backbone for the encoder).",
        "masks": "binary | folder | values: how mask files name classes when boxes come from masks.",
        "epochs": "Epochs (default 40, all run: patience 100; the epoch with the best validation mAP@0.5 is kept).",
        "batch": "Batch size (default 16).",
        "lr": "Peak learning rate (default 0.004).",
    }
    train_example = "threshold=0.4 resize=tile scale=0.5"
    headline = ("map50", "map50_95", "box_precision", "box_recall", "image_precision", "image_recall")
    figures = "PR curves per class and the images with false or missed boxes (missed ones in green)"

    def default_params(self, cfg):
        return {"width": 8}

    def fits(self, ds) -> bool:
        return ds.n_masks > 0 or any(s.boxes for s in ds.samples)

    def check_card(self, card: ModelCard) -> None:
        if card.outputs != ("heatmap", "boxes"):
            raise ValueError(f"a detect model's outputs are heatmap and boxes, not {', '.join(card.outputs)}")

    def with_threshold(self, card, threshold, min_area, pixel_threshold):
        check_probability("--threshold", threshold, "a box score")
        if min_area is not None and min_area < 0:
            raise min_area_error(min_area, self.name)
        if pixel_threshold is not None:
            raise ConfigError("--pixel-threshold applies to anomaly models; this is a detect model")
        changes = {k: v for k, v in (("threshold", threshold), ("min_area", min_area)) if v is not None}
        return card.model_copy(update={"postprocess": self._post(card).model_copy(update=changes)})

    @staticmethod
    def _post(card: ModelCard) -> PostProcess:
        return card.postprocess or PostProcess(threshold=0.3, kernel=0)

    def store_threshold(self, card: ModelCard, value: float) -> ModelCard:
        return card.model_copy(update={"postprocess": self._post(card).model_copy(update={"threshold": float(value)})})

    def controls(self, card: ModelCard) -> list[Control]:
        return [Control("Score threshold", "threshold", float(self._post(card).threshold), "the score of a box")]

    def confidence(self, reference, prediction) -> tuple[str, float]:
        return "best box score", float(prediction.score)

    def predict(self, card, images, sources, run, batch_size):
        from inspekt.tasks.detect.predict import predict_detect

        return predict_detect(card, images, sources, run, batch_size)

    def int8_truth(self, card, samples):
        from inspekt.tasks.detect.boxes import BoxRule

        from_masks = BoxRule.from_card(card).from_masks
        return [s for s in samples if s.boxes is not None or (from_masks and s.mask is not None)]

    def int8_agreement(self, fp32, int8):
        from inspekt.tasks.detect.metrics import box_agreement

        return box_agreement(fp32.found, int8.found, fp32.threshold)

    def cells(self, prediction, card, topk, precise):
        counts = prediction.extra["counts"]
        if precise:
            return {
                "label": str(prediction.label),
                "score": f"{prediction.score:.6f}",
                "verdict": str(prediction.extra["verdict"]),
                "boxes": str(len(prediction.boxes)),
                **{f"count_{name}": str(n) for name, n in counts.items()},
            }
        found = ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "-"
        return {"label": str(prediction.label), "best score": f"{prediction.score:.3f}", "boxes": found}

    def training(self, cfg, ds):
        from inspekt.tasks.detect.train import DetectTraining
        from inspekt.tasks.supervised import Supervised

        return Supervised(cfg, ds, DetectTraining(cfg, ds))

    def evaluate(self, predictor, dataset, split, progress=None):
        from inspekt.tasks.detect.evaluate import evaluate_detect

        return evaluate_detect(predictor, dataset, split, progress)

    def check_threshold_choice(self, card: ModelCard, choice: str | float) -> str | float:
        from inspekt.tasks.shared import parse_threshold_choice

        return parse_threshold_choice(choice)

    def choose_threshold(self, result: Any, choice: str | float) -> float:
        from inspekt.tasks.detect.metrics import best_f1_threshold
        from inspekt.tasks.shared import BEST_F1, parse_threshold_choice

        choice = parse_threshold_choice(choice)
        if choice != BEST_F1:
            return float(choice)
        best = best_f1_threshold(result.truths, result.found)
        if best is None:
            raise ConfigError("--set-threshold best-f1: no true box was found at any score; give a number")
        return best

    def rescore(self, result: Any, threshold: float) -> Any:
        from dataclasses import replace

        from inspekt.tasks.detect.metrics import at_threshold

        metrics = result.metrics | at_threshold(result.truths, result.found, threshold)
        return replace(result, threshold=threshold, metrics=metrics)

    def write_plots(self, result, predictor, dataset, folder: Path, limit: int | None = None) -> list[Path]:
        from inspekt.tasks.detect.evaluate import GALLERY_LIMIT, write_plots

        return write_plots(result, folder, limit=GALLERY_LIMIT if limit is None else limit)

    def summary(self, result: Any) -> list[Table]:
        m = result.metrics
        rows = [
            ("mAP@0.5", fmt(m["map50"])),
            ("mAP@0.5:0.95", fmt(m["map50_95"])),
            (f"box precision (score >= {result.threshold:g}, IoU 0.5)", fmt(m["box_precision"])),
            ("box recall", fmt(m["box_recall"])),
            ("box F1", fmt(m["box_f1"])),
            ("image precision (any defect)", fmt(m["image_precision"])),
            ("image recall (any defect)", fmt(m["image_recall"])),
            *((name, fmt(m[key])) for name, key in INSPECTION_ROWS),
            ("mean count error per image", fmt(m["count_mae"], 2)),
            ("ms / image", fmt(result.to_dict()["ms_per_image"], 1)),
        ]
        per_class = [(r["class"], fmt(r["ap50"]), fmt(r["ap"]), str(r["boxes"])) for r in m["per_class"]]
        head = f"{m['n_images']} images ({m['n_defective']} with boxes), {len(result.skipped)} skipped"
        return [
            Table("metrics (COCO, boxes at the original size)", ("metric", "value"), rows, note=head),
            Table("per class", ("class", "AP@0.5", "AP@0.5:0.95", "true boxes"), per_class),
        ]
