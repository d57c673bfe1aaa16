"""Segmentation: a class per pixel (class 0 background), cleaned into defect regions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspekt.card import ModelCard, PostProcess
from inspekt.errors import ConfigError, DatasetError
from inspekt.tasks.base import Control, Table, Task, check_probability, fmt, min_area_error, region_cells, region_post
from inspekt.tasks.shared import INSPECTION_ROWS, strided_stem


class Segment(Task):
    """Segmentation: predictions, the defect-probability threshold, training hooks, evaluation, reports."""

    name = "segment"
    score_axis = 1
    thresholds = "defect"
    int8_metrics = ("defect_iou", "image_f1")
    int8_agreeing = "image verdicts"
    default_model = "tiny_unet"
    # benchmarks/segment_magnetic_tile.py --defaults: with the config's class defaults (30 epochs, patience 10,
    # threshold 0.5, images shuffled) magnetic_tile kept a validation IoU of 0.000; most images and almost all pixels
    # are defect-free, so images with and without defects are drawn equally often, the rare defect pixels are
    # weighted up, the card's threshold is calibrated on validation, and the IoU, noisy early on, gets time
    train_defaults = {
        "epochs": 75,
        "batch": 16,
        "lr": 0.003,
        "augment": "light",
        "patience": 100,
        "defect_crops": 0.8,
        "sampler": "balanced",
        "class_weights": "auto",
        "threshold": "auto",
    }
    issues = "mask"
    train_summary = (
        "Train a segmentation model (masks in, masks out); prints the bundle path. Ctrl-C keeps the best so far."
    )
    train_options = tuple(
        "data model pretrained epochs imgsz batch lr resize "
        "masks augment loss class_weights seed out name exist_ok".split()
    )
    train_params = {"encoder": "Encoder of the smp models (resnet18, efficientnet-b0, ...)."}
    train_help = {
        "data": "Dataset with masks: images/ + masks/, <stem>_mask.png, MVTec, or a CSV with a mask column "
        "(not needed with --resume).",
        "model": "tiny_unet (default), unet, unetplusplus, fpn, deeplabv3plus, linknet "
        "(see `inspekt models --task segment`).",
        "pretrained": "Starting weights: a .safetensors/.pth file (a whole model, or a backbone for the encoder).",
        "loss": "dice_bce | focal | tversky (auto: dice_bce).",
        "masks": "binary | folder | values: how mask files name classes.",
    }
    train_example = "min_area=20 threshold=0.4 scale=0.5"
    headline = ("defect_iou", "dice", "per_image_iou", "pixel_precision", "pixel_recall", "image_auroc", "image_f1")
    figures = "the worst images (prediction filled, truth outlined in green)"

    def default_params(self, cfg):
        """The strided stem, and from the same size 8 channels at the first level instead of 16:
        benchmarks/segment_magnetic_tile.py --defaults (75 epochs, 128 px, 1 core) gave test defect IoU
        0.579 / 0.600 (seeds 0 / 1) in 683 s with width 8, against 0.612 in 1,728 s with width 16 (2.5x
        the images per second; image AUROC 0.82 / 0.79 against 0.87)."""
        return strided_stem(cfg.imgsz, width=8)

    def fits(self, ds) -> bool:
        return ds.n_masks > 0

    def check_card(self, card: ModelCard) -> None:
        if len(card.classes) < 2 or card.classes[0] != "background":
            raise ValueError("segmentation classes must start with 'background' and name at least one defect class")

    def with_threshold(self, card, threshold, min_area, pixel_threshold):
        check_probability("--threshold", threshold)
        if min_area is not None and min_area < 0:
            raise min_area_error(min_area, self.name)
        if pixel_threshold is not None:
            raise ConfigError("--pixel-threshold applies to anomaly models; this is a segment model")
        post = region_post(card, min_area) if min_area is not None else card.postprocess or PostProcess()
        changes = {"threshold": threshold} if threshold is not None else {}
        return card.model_copy(update={"postprocess": post.model_copy(update=changes)})

    def store_threshold(self, card: ModelCard, value: float) -> ModelCard:
        post = (card.postprocess or PostProcess()).model_copy(update={"threshold": float(value)})
        return card.model_copy(update={"postprocess": post})

    def controls(self, card: ModelCard) -> list[Control]:
        value = float((card.postprocess or PostProcess()).threshold)
        return [Control("Decision threshold", "threshold", value, "the defect probability of a pixel")]

    def confidence(self, reference, prediction) -> tuple[str, float]:
        return "largest defect probability", float(prediction.score)

    def int8_truth(self, card, samples):
        # where a dataset has masks, an image without one is defect-free (evaluate_segment scores it so)
        return list(samples) if any(s.mask is not None for s in samples) else []

    def int8_agreement(self, fp32, int8):
        verdicts = {row["path"]: row["verdict"] for row in int8.rows}
        same = [verdicts.get(row["path"]) == row["verdict"] for row in fp32.rows]
        return sum(same) / len(same) if same else 1.0

    def predict(self, card, images, sources, run, batch_size):
        from inspekt.tasks.segment.predict import predict_segment

        first = card.outputs[0]
        return predict_segment(card, images, sources, lambda batch: run(batch)[first], batch_size)

    def cells(self, prediction, card, topk, precise):
        return region_cells(prediction, "defect_area_pct", "max p", precise)

    def training(self, cfg, ds):
        from inspekt.tasks.segment.train import SegmentTraining
        from inspekt.tasks.supervised import Supervised

        return Supervised(cfg, ds, SegmentTraining(cfg, ds))

    def evaluate(self, predictor, dataset, split, progress=None):
        from inspekt.tasks.segment.evaluate import evaluate_segment

        return evaluate_segment(predictor, dataset, split, progress)

    def check_data(self, ds, card: ModelCard, advice: str) -> None:
        if not ds.n_masks:  # every image the model finds a defect in would disagree with "no mask"
            raise DatasetError(
                f"{ds.root}: no mask files, so there are no masks to compare a segmentation model's with; give "
                f"the dataset with its masks, or {advice}"
            )

    def check_threshold_choice(self, card: ModelCard, choice: str | float) -> str | float:
        from inspekt.tasks.shared import BEST_F1, parse_threshold_choice

        parsed = parse_threshold_choice(choice)
        if parsed == BEST_F1:
            raise ConfigError(
                "--set-threshold best-f1 applies to binary classifiers, detection and anomaly models; give "
                "segmentation models a defect probability, e.g. --set-threshold 0.4"
            )
        return parsed

    def write_plots(self, result, predictor, dataset, folder: Path, limit: int | None = None) -> list[Path]:
        from inspekt.tasks.segment.evaluate import WORST_LIMIT, write_worst_overlays

        return write_worst_overlays(result, predictor, dataset, folder, limit=WORST_LIMIT if limit is None else limit)

    def summary(self, result: Any) -> list[Table]:
        m, post = result.metrics, result.postprocess
        rows = [
            (name, fmt(m[key]))
            for name, key in (
                ("mean IoU (defect classes)", "iou"),
                ("mean Dice", "dice"),
                ("defect IoU (any class)", "defect_iou"),
                ("per-image IoU", "per_image_iou"),
                ("pixel precision", "pixel_precision"),
                ("pixel recall", "pixel_recall"),
                ("image AUROC (max probability)", "image_auroc"),
                ("image precision", "image_precision"),
                ("image recall", "image_recall"),
                ("image F1", "image_f1"),
                *INSPECTION_ROWS,
            )
        ]
        rows.append(
            (
                "post-processing",
                f"p >= {post.get('threshold')}, min area {post.get('min_area')} px, kernel {post.get('kernel')} px",
            )
        )
        rows.append(("ms / image", fmt(result.to_dict()["ms_per_image"], 1)))
        per_class = [
            (
                r["class"],
                fmt(r["iou"]),
                fmt(r["dice"]),
                fmt(r["precision"]),
                fmt(r["recall"]),
                str(r["pixels"]),
            )
            for r in m["per_class"]
        ]
        head = f"{m['n_images']} images ({m['n_defective']} with defects), {len(result.skipped)} skipped"
        return [
            Table("metrics (pixels at the original size)", ("metric", "value"), rows, note=head),
            Table("per class", ("class", "IoU", "Dice", "precision", "recall", "pixels"), per_class),
        ]
