"""Classification: one label per image, from a softmax over the card's classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspekt.card import ModelCard, positive_class
from inspekt.errors import ConfigError, DatasetError
from inspekt.tasks.base import Control, Table, Task, check_probability, fmt, min_area_error
from inspekt.tasks.shared import INSPECTION_ROWS, strided_stem


class Classify(Task):
    """Classification: predictions, binary thresholds, training hooks, evaluation and reports."""

    name = "classify"
    score_axis = -1
    thresholds = "positive-class probability"
    int8_metrics = ("accuracy", "macro_f1")
    int8_agreeing = "labels"
    explainable = True
    default_model = "tiny_cnn"
    # benchmarks/classify_magnetic_tile.py --defaults (6 classes, 128 px, 1 core): the config's class defaults
    # (30 epochs, lr 0.002, default augmentation with 75-100 % crops and 15-degree turns, average pooling) gave test
    # accuracy 0.795; light augmentation and avgmax pooling 0.966 in 158 s; with 55 epochs at lr 0.001 as well
    # 0.978 in 281 s (without avgmax: 0.974, macro-F1 0.937 against 0.958). Patience 20 left that run's result
    # unchanged (its best epoch was 36).
    train_defaults = {"epochs": 55, "lr": 0.001, "augment": "light", "patience": 20}
    issues = "label"
    train_summary = "Train an image classifier; prints the bundle path. Ctrl-C keeps the best model so far."
    train_options = tuple(
        "data model pretrained epochs imgsz batch lr augment "
        "loss class_weights sampler metric seed out name exist_ok".split()
    )
    train_params = {}
    train_help = {
        "data": "Dataset folder or CSV (not needed with --resume).",
        "model": "Registered model name (default tiny_cnn; see `inspekt models --task classify`), or timm/<name>.",
        "loss": "ce | bce | focal (auto: ce).",
    }
    train_example = "patience=3 clahe=2"
    headline = ("accuracy", "macro_f1", "balanced_accuracy", "roc_auc", "pr_auc", "ece")
    figures = "confusion matrices, ROC / PR curves, the threshold sweep (binary) and the errors with Grad-CAM"

    def default_params(self, cfg):
        """From the same size, the strided stem and a head on the average and the maximum of the last
        features: a small defect lights up a few positions, which an average alone dilutes (measured at
        128 px, see ``train_defaults``; smaller inputs, like the demo and the label-issue folds at 64 px,
        keep the plain network)."""
        return strided_stem(cfg.imgsz, pool="avgmax")

    def fits(self, ds) -> bool:
        return len(ds.classes) >= 2

    def check_card(self, card: ModelCard) -> None:
        if card.thresholds and len(card.classes) != 2:
            raise ValueError("classification thresholds apply to binary models (2 classes) only")
        if card.input.resize == "tile":
            raise ValueError("input.resize 'tile' applies to segmentation and anomaly models only")

    def with_threshold(self, card, threshold, min_area, pixel_threshold):
        check_probability("--threshold", threshold)
        if min_area is not None:
            raise min_area_error(min_area, self.name)
        if pixel_threshold is not None:
            raise ConfigError("--pixel-threshold applies to anomaly models; this is a classify model")
        if threshold is None:
            return card
        if len(card.classes) != 2:
            raise ConfigError(
                "--threshold applies to binary classifiers, segmentation and anomaly models; this "
                f"classify model has classes {list(card.classes)}"
            )
        return card.model_copy(update={"thresholds": {positive_class(card.classes): float(threshold)}})

    def store_threshold(self, card: ModelCard, value: float) -> ModelCard:
        from inspekt.tasks.classify.evaluate import binary_positive_class

        return card.model_copy(update={"thresholds": {binary_positive_class(card, "this model"): float(value)}})

    def controls(self, card: ModelCard) -> list[Control]:
        if len(card.classes) != 2:
            return []
        value = float((card.thresholds or {}).get(card.classes[-1], 0.5))
        return [Control("Decision threshold", "threshold", value, "the positive-class probability")]

    def confidence(self, reference, prediction) -> tuple[str, float]:
        return f"confidence in {reference.label}", float(prediction.scores[reference.label])

    def int8_truth(self, card, samples):
        labelled = [s for s in samples if s.label is not None]
        unknown = sorted({s.label for s in labelled} - set(card.classes))
        if unknown:
            raise DatasetError(
                f"labels {unknown} are not among the model's classes {list(card.classes)}; "
                "pass --calib with images labelled with the model's classes"
            )
        return labelled

    def int8_gap(self, card, samples):
        missing = [c for c in card.classes if c not in {s.label for s in samples}]
        if not missing:
            return None
        named = ", ".join(map(repr, missing))
        return (
            f"hold no {named} image: the accuracy on {'that class' if len(missing) == 1 else 'those classes'} is not "
            f"measured; calibrate on images of all {len(card.classes)} classes (--calib / calib=)"
        )

    def int8_agreement(self, fp32, int8):
        import numpy as np

        return float(np.mean(fp32.y_pred == int8.y_pred)) if len(fp32.y_pred) else 1.0

    def predict(self, card, images, sources, run, batch_size):
        from inspekt.tasks.classify.predict import predict_classify

        return predict_classify(card, images, sources, run, batch_size)

    def cells(self, prediction, card, topk, precise):
        cells = {"label": str(prediction.label), "score": f"{prediction.score:.{6 if precise else 3}f}"}
        if precise and topk:
            cells["top"] = " ".join(f"{name}:{p:.4f}" for name, p in prediction.top(topk))
        elif precise:
            cells |= {f"score_{c}": f"{prediction.scores[c]:.6f}" for c in card.classes}
        elif topk:
            cells["top"] = ", ".join(f"{name} {p:.3f}" for name, p in prediction.top(topk))
        return cells

    def training(self, cfg, ds):
        from inspekt.tasks.classify.train import ClassifyTraining
        from inspekt.tasks.supervised import Supervised

        return Supervised(cfg, ds, ClassifyTraining(cfg, ds))

    def evaluate(self, predictor, dataset, split, progress=None):
        from inspekt.tasks.classify.evaluate import evaluate_classify

        return evaluate_classify(predictor, dataset, split, progress)

    def check_threshold_choice(self, card: ModelCard, choice: str | float) -> str | float:
        from inspekt.tasks.classify.evaluate import binary_positive_class
        from inspekt.tasks.shared import parse_threshold_choice

        parsed = parse_threshold_choice(choice)
        binary_positive_class(card, "this model")
        return parsed

    def choose_threshold(self, result: Any, choice: str | float) -> float:
        from inspekt.tasks.classify.evaluate import choose_threshold

        return choose_threshold(result, choice)

    def rescore(self, result: Any, threshold: float) -> Any:
        return result.with_threshold(threshold)

    def check_data(self, ds, card: ModelCard, advice: str) -> None:
        from inspekt.tasks.classify.evaluate import check_labels

        check_labels(ds, card.classes, f"rename the folders or CSV labels to the model's classes, or {advice}")

    def threshold_note(self, result: Any) -> str | None:
        from inspekt.tasks.shared import BEST_F1, threshold_note

        if result.positive is None:  # not a binary model
            return None
        best = result.with_threshold(BEST_F1)

        def at(r) -> dict:  # the positive (defect) class's F1 beside the inspection rates
            return r.metrics | {"f1": next(c["f1"] for c in r.metrics["per_class"] if c["class"] == r.positive)}

        decision = "the stored threshold" if result.threshold is not None else "the most probable class"
        return threshold_note(at(result), at(best), best.threshold, decision)

    def write_plots(self, result, predictor, dataset, folder: Path, limit: int | None = None) -> list[Path]:
        from inspekt.tasks.classify.plots import GALLERY_LIMIT, plot_evaluation

        return plot_evaluation(result, folder, gallery_limit=GALLERY_LIMIT if limit is None else limit)

    def summary(self, result: Any) -> list[Table]:
        m = result.metrics
        rows = [
            ("accuracy", fmt(m["accuracy"])),
            ("balanced accuracy", fmt(m["balanced_accuracy"])),
            ("macro F1", fmt(m["macro_f1"])),
            ("weighted F1", fmt(m["weighted_f1"])),
            ("ROC-AUC", fmt(m["roc_auc"])),
            ("PR-AUC", fmt(m["pr_auc"])),
            ("ECE (top-1)", fmt(m["ece"])),
            *((name, fmt(m[key])) for name, key in INSPECTION_ROWS if key in m),
        ]
        if result.positive is not None:
            decision = "argmax" if result.threshold is None else f"{result.positive} if p >= {result.threshold:g}"
            rows.append(("decision", decision))
        per_class = [
            (r["class"], fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), str(r["support"])) for r in m["per_class"]
        ]
        confusion = [(name, *(str(c) for c in counts)) for name, counts in zip(result.classes, m["confusion"])]
        head = f"{m['n']} images, {len(result.skipped)} skipped"
        return [
            Table("metrics", ("metric", "value"), rows, note=head),
            Table("per class", ("class", "precision", "recall", "F1", "support"), per_class),
            Table("confusion matrix (rows = true)", ("true \\ predicted", *result.classes), confusion),
        ]
